"""The MCP endpoint end to end: both protocol eras through a real uvicorn, inbound auth, routing,
Host/Origin checks. Upstream: the fault server (an SDK server) over HTTP."""

from __future__ import annotations

import asyncio
import json

import pytest
from mcp.shared.exceptions import MCPError

from audit.models import AuditEvent
from tenants.models import AgentKey
from tests.factories import AgentFactory, AgentKeyFactory
from tests.gateway.conftest import ERAS, bot_policy, http_server, mcp_client, post

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def fault_catalog(gateway, gateway_catalog, fault_server, org_a):
    server = http_server("fault", fault_server.url)
    gateway_catalog(
        org_a,
        servers=[server],
        policies=[
            bot_policy(
                "triage",
                tools=("fault.echo", "fault.slow", "fault.whoami", "fault.fail"),
                deny=("fault.fail",),
            )
        ],
        tool_groups={"echoes": ("fault.echo",)},
    )
    return server


@pytest.mark.parametrize("mode", ERAS)
def test_agent_lists_and_calls_allowed_tools_in_both_eras(gateway, fault_catalog, agent_key, mode):
    agent, key = agent_key("triage-bot")

    async def scenario():
        async with mcp_client(gateway.url("acme"), key, mode=mode) as client:
            listed = await client.list_tools()
            result = await client.call_tool("fault.echo", {"message": "hello"})
            return [t.name for t in listed.tools], result

    names, result = asyncio.run(scenario())
    assert names == ["fault.echo", "fault.slow", "fault.whoami"]  # sorted; fail denied
    assert not result.is_error
    assert result.content[0].text == "hello"
    event = AuditEvent.objects.get(action="tool.call")
    assert (event.server, event.tool, event.decision, event.outcome) == (
        "fault",
        "echo",
        "allow",
        "success",
    )
    assert event.agent_id == agent.pk
    assert event.details["arguments"] == {"message": "hello"}
    assert event.latency_ms is not None and event.upstream_latency_ms is not None
    assert event.request_id


def test_toolset_endpoint_serves_only_its_group(gateway, fault_catalog, agent_key):
    _, key = agent_key("triage-bot")

    async def scenario():
        async with mcp_client(gateway.url("acme", "echoes"), key) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            with pytest.raises(MCPError) as denied:
                await client.call_tool("fault.slow", {"seconds": 0})
            return names, denied.value

    names, error = asyncio.run(scenario())
    assert names == ["fault.echo"]
    assert error.code == -32010
    assert "toolset 'echoes'" in error.message


def test_unknown_toolset_is_404(gateway, fault_catalog, agent_key):
    _, key = agent_key("triage-bot")
    response = post(
        gateway.url("acme", "nope"), {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, key=key
    )
    assert response.status_code == 404
    assert "No toolset 'nope'" in response.json()["error"]["message"]


def test_denied_tool_is_refused_with_reason_and_audited(
    gateway, fault_catalog, agent_key, fault_server
):
    _, key = agent_key("triage-bot")

    async def scenario():
        async with mcp_client(gateway.url("acme"), key, mode="2026-07-28") as client:
            with pytest.raises(MCPError) as denied:
                await client.call_tool("fault.fail", {})
            return denied.value

    error = asyncio.run(scenario())
    assert error.code == -32010
    assert "denied by policy 'triage'" in error.message
    event = AuditEvent.objects.get(action="tool.call")
    assert (event.decision, event.outcome, event.error_class) == ("deny", "denied", "policy")
    assert event.details["matched_rules"]


BAD_KEYS = {
    "missing": None,
    "malformed": "not-a-key",
    "unknown": "mgw_0123456789ab_" + "x" * 40,
}


@pytest.mark.parametrize("case", list(BAD_KEYS))
def test_bad_credentials_get_401_with_challenge(gateway, fault_catalog, case):
    response = post(
        gateway.url("acme"), {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, key=BAD_KEYS[case]
    )
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="mcp-gateway"')
    if case != "missing":
        assert 'error="invalid_token"' in challenge or 'error="invalid_request"' in challenge
    assert not AuditEvent.objects.filter(action="tool.call").exists()


def test_revoked_expired_and_other_org_keys_are_refused(
    gateway, fault_catalog, agent_key, charlie, org_b
):
    from datetime import timedelta

    from django.utils import timezone

    _, revoked = agent_key("triage-bot")
    AgentKey.objects.update(revoked_at=timezone.now())
    agent = AgentFactory(organization=org_a_of(fault_catalog), slug="other")
    _, expired = AgentKeyFactory.issue(
        agent=agent, expires_at=timezone.now() - timedelta(minutes=1)
    )
    globex_agent = AgentFactory(organization=org_b, slug="triage-bot")
    _, globex = AgentKeyFactory.issue(agent=globex_agent)
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    for key in (revoked, expired, globex):
        response = post(gateway.url("acme"), body, key=key)
        assert response.status_code == 401, response.text
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    # The other org's key works on its own endpoint (no tools there: empty list).
    response = post(
        gateway.url("globex"), {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, key=globex
    )
    assert response.status_code == 200


def org_a_of(_server):
    from tenants.models import Organization

    return Organization.objects.get(slug="acme")


def test_revocation_takes_effect_within_the_key_cache_bound(
    gateway, fault_catalog, agent_key, settings
):
    from django.utils import timezone

    from gateway.conf import gateway_settings

    _, key = agent_key("triage-bot")
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    assert post(gateway.url("acme"), body, key=key).status_code == 200
    AgentKey.objects.update(revoked_at=timezone.now())
    import time

    time.sleep(gateway_settings().key_cache_seconds + 0.2)
    assert post(gateway.url("acme"), body, key=key).status_code == 401


def test_host_and_origin_are_checked(gateway, fault_catalog, agent_key):
    _, key = agent_key("triage-bot")
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    assert (
        post(gateway.url("acme"), body, key=key, headers={"Host": "evil.example"}).status_code
        == 421
    )
    assert (
        post(
            gateway.url("acme"), body, key=key, headers={"Origin": "http://evil.example"}
        ).status_code
        == 403
    )
    assert (
        post(
            gateway.url("acme"), body, key=key, headers={"Origin": "http://127.0.0.1:8000"}
        ).status_code
        == 200
    )


def test_unknown_paths_are_404(gateway):
    response = post(
        gateway.base_url + "/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, key=None
    )
    assert response.status_code == 404
    assert json.loads(response.text)["error"]["message"].startswith("Not found")


def test_request_headers_answer_lookups_as_starlette_does():
    """The endpoint's one-pass header lookups: any case, the first of a repeated header,
    absent names; iteration still sees every copy (the SDK's duplicate checks need them)."""
    from starlette.datastructures import Headers

    from gateway.fastpath import RequestHeaders

    scope = {
        "type": "http",
        "headers": [
            (b"host", b"gw.example"),
            (b"mcp-param-region", b"eu"),
            (b"mcp-param-region", b"us"),
            (b"authorization", b"Bearer k"),
        ],
    }
    fast, plain = RequestHeaders(scope=scope), Headers(scope=scope)
    for name in ("Host", "mcp-param-region", "MCP-PARAM-REGION", "Authorization", "origin"):
        assert fast.get(name) == plain.get(name)
        assert (name in fast) == (name in plain)
    assert fast["Mcp-Param-Region"] == "eu"
    with pytest.raises(KeyError):
        fast["origin"]
    assert fast.getlist("mcp-param-region") == ["eu", "us"]
    assert list(fast.items()) == list(plain.items()) and len(list(fast.items())) == 4
