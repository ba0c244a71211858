"""Upstream faults through the gateway: timeouts, an upstream killed mid-call, the circuit
breaker opening and closing, a crashing stdio child restarted with nothing left behind."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from audit.models import AuditEvent
from gateway.conf import gateway_settings
from tests.gateway.conftest import bot_policy, http_server, mcp_client, stdio_server

pytestmark = [pytest.mark.e2e]

ALLOW_FAULT = bot_policy("faults", servers=("fault",))


@pytest.fixture
def quick_breaker(monkeypatch):
    monkeypatch.setenv("GATEWAY_BREAKER_FAILURES", "2")
    monkeypatch.setenv("GATEWAY_BREAKER_COOLDOWN", "1.5")
    gateway_settings.cache_clear()
    yield
    monkeypatch.undo()
    gateway_settings.cache_clear()


def _texts(result) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


def test_slow_tool_beyond_the_timeout_gets_a_clean_error(
    gateway, gateway_catalog, fault_server, org_a, agent_key
):
    server = http_server("fault", fault_server.url, call_timeout=1.0)
    gateway_catalog(org_a, servers=[server], policies=[ALLOW_FAULT])
    _, key = agent_key("triage-bot")

    async def scenario():
        async with mcp_client(gateway.url("acme"), key) as client:
            started = time.monotonic()
            result = await client.call_tool("fault.slow", {"seconds": 5})
            return result, time.monotonic() - started

    result, elapsed = asyncio.run(scenario())
    assert result.is_error
    assert "did not answer 'slow' within 1 s" in _texts(result)
    assert elapsed < 3
    event = AuditEvent.objects.get(action="tool.call")
    assert (event.error_class, event.outcome) == ("timeout", "failure")


def test_upstream_killed_mid_call_then_circuit_opens_and_closes_after_recovery(
    gateway, gateway_catalog, fault_server, org_a, agent_key, quick_breaker
):
    server = http_server("fault", fault_server.url, call_timeout=5.0)
    gateway_catalog(org_a, servers=[server], policies=[ALLOW_FAULT])
    _, key = agent_key("triage-bot")

    async def scenario():
        async with mcp_client(gateway.url("acme"), key) as client:
            assert not (await client.call_tool("fault.echo", {"message": "up"})).is_error
            started = time.monotonic()
            call = asyncio.create_task(client.call_tool("fault.slow", {"seconds": 30}))
            await asyncio.sleep(0.5)
            fault_server.process.kill()
            killed = await call
            killed_after = time.monotonic() - started
            # Still down: the next call fails too, which reaches the threshold of 2.
            down = await client.call_tool("fault.echo", {"message": "down"})
            started = time.monotonic()
            refused = await client.call_tool("fault.echo", {"message": "refused"})
            refused_after = time.monotonic() - started
            fault_server.restart()
            await asyncio.sleep(1.6)  # the cool-down
            recovered = await client.call_tool("fault.echo", {"message": "back"})
            again = await client.call_tool("fault.echo", {"message": "again"})
            return killed, killed_after, down, refused, refused_after, recovered, again

    killed, killed_after, down, refused, refused_after, recovered, again = asyncio.run(scenario())
    assert killed.is_error and killed_after < 5.5
    assert "upstream server 'fault'" in _texts(killed)
    assert down.is_error
    assert refused.is_error and "circuit open" in _texts(refused)
    assert refused_after < 0.5  # refused at once, nothing sent
    assert not recovered.is_error and _texts(recovered) == "back"
    assert not again.is_error
    classes = list(
        AuditEvent.objects.filter(action="tool.call")
        .order_by("id")
        .values_list("error_class", flat=True)
    )
    assert classes[1] in ("upstream", "timeout")
    assert "circuit_open" in classes
    assert classes[-2:] == ["", ""]


def _children() -> list[tuple[int, str]]:
    """(pid, state) of this process's direct children, from /proc."""
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        rest = stat.rsplit(")", 1)[1].split()
        state, ppid = rest[0], int(rest[1])
        if ppid == me:
            found.append((int(entry.name), state))
    return found


def test_crashing_stdio_child_is_restarted_and_1000_calls_leave_no_zombie(
    gateway, gateway_catalog, fault_server, org_a, agent_key
):
    stdio = fault_server.stdio()
    server = stdio_server("fault", stdio.command, stdio.args, stdio.env)
    gateway_catalog(org_a, servers=[server], policies=[ALLOW_FAULT])
    _, key = agent_key("triage-bot")
    before = {pid for pid, _ in _children()}

    async def scenario():
        crashes = ok = 0
        async with mcp_client(gateway.url("acme"), key) as client:
            for i in range(1000):
                if i % 100 == 50:
                    result = await client.call_tool("fault.crash", {})
                    assert result.is_error, _texts(result)
                    crashes += 1
                else:
                    result = await client.call_tool("fault.echo", {"message": str(i)})
                    assert not result.is_error, _texts(result)
                    assert _texts(result) == str(i)
                    ok += 1
        return crashes, ok

    crashes, ok = asyncio.run(scenario())
    assert (crashes, ok) == (10, 990)
    time.sleep(0.5)
    after = _children()
    assert [pid for pid, state in after if state == "Z"] == []
    new = [pid for pid, _ in after if pid not in before]
    assert len(new) <= 1  # at most the one pooled child that is still serving
    assert AuditEvent.objects.filter(action="tool.call").count() == 1000
