"""The lean upstream path (gateway.lean): HTTP upstreams get `tools/call` as one POST on a
pooled keep-alive connection (gateway.http1), with the SDK path's guarantees; stdio upstreams
keep the SDK client.

Counted through `pool.stats` (the gateway runs in this process, in uvicorn's thread)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from audit.models import AuditEvent
from gateway.pool import pool
from policies.types import PolicySpec
from tests.gateway.conftest import ERAS, bot_policy, http_server, mcp_client, stdio_server

pytestmark = [pytest.mark.e2e]


def _allow(server: str) -> PolicySpec:
    return bot_policy(f"allow-{server}", servers=(server,))


def _fresh(server, suffix: str):
    """The server under a pool key of its own (no pooled client or tool listing from an earlier
    test)."""
    server.upstream = replace(server.upstream, key=f"{server.upstream.key}:{suffix}")
    return server


def _texts(result) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


def _calls(gateway, key, *calls, mode="legacy"):
    async def scenario():
        async with mcp_client(gateway.url("acme"), key, mode=mode) as client:
            return [await client.call_tool(name, args) for name, args in calls]

    before = dict(pool.stats)
    results = asyncio.run(scenario())
    return results, {k: pool.stats[k] - before.get(k, 0) for k in pool.stats}


@pytest.mark.parametrize("mode", ERAS)
def test_http_upstream_calls_take_the_lean_path_sse_responses_and_is_error(
    gateway, gateway_catalog, fault_server, org_a, agent_key, mode
):
    # The fault server answers in SSE (not JSON response mode).
    gateway_catalog(
        org_a, servers=[http_server("fault", fault_server.url)], policies=[_allow("fault")]
    )
    _, key = agent_key("triage-bot")
    (echo, failed), counted = _calls(
        gateway, key, ("fault.echo", {"message": "héllo"}), ("fault.fail", {}), mode=mode
    )
    assert not echo.is_error and _texts(echo) == "héllo"
    assert failed.is_error  # the upstream's own isError, passed through
    assert counted == {"lean": 2, "lean_fallback": 0, "sdk": 0}
    events = list(AuditEvent.objects.filter(action="tool.call").order_by("id"))
    assert [e.outcome for e in events] == ["success", "failure"]
    assert events[1].details.get("upstream_is_error") is True


def test_json_response_upstream_on_the_lean_path(
    gateway, gateway_catalog, demo_upstream, org_a, agent_key
):
    server = http_server("tickets", demo_upstream.tickets_url)
    gateway_catalog(org_a, servers=[server], policies=[_allow("tickets")])
    _, key = agent_key("triage-bot")
    (listed,), counted = _calls(gateway, key, ("tickets.list_tickets", {}))
    assert not listed.is_error, _texts(listed)
    assert counted["lean"] == 1 and counted["sdk"] == 0
    # Structured content (the tool declares an output schema) survives the lean path.
    assert listed.structured_content is not None


def test_2025_era_stateful_upstream_gets_its_own_session_on_the_lean_path(
    gateway, gateway_catalog, everything_http, org_a, agent_key
):
    """server-everything speaks 2025-11-25 only, keeps sessions, answers in SSE."""
    server = http_server("everything", everything_http)
    gateway_catalog(org_a, servers=[server], policies=[_allow("everything")])
    _, key = agent_key("triage-bot")
    (echoed, summed), counted = _calls(
        gateway,
        key,
        ("everything.echo", {"message": "hi"}),
        ("everything.get-sum", {"a": 2, "b": 3}),
    )
    assert not echoed.is_error and "hi" in _texts(echoed)
    assert not summed.is_error and "5" in _texts(summed)
    assert counted["lean"] == 2 and counted["sdk"] == 0


def test_output_schema_is_still_checked_on_the_lean_path(
    gateway, gateway_catalog, fault_server, org_a, agent_key
):
    fault_server.set_tools(
        [
            {
                "name": "typed",
                "description": "Declares an output schema, answers with text only.",
                "inputSchema": {"type": "object", "properties": {}},
                "outputSchema": {
                    "type": "object",
                    "properties": {"n": {"type": "integer"}},
                    "required": ["n"],
                },
            }
        ]
    )
    server = _fresh(http_server("fault", fault_server.url), "typed")
    gateway_catalog(org_a, servers=[server], policies=[_allow("fault")])
    _, key = agent_key("triage-bot")
    (typed,), counted = _calls(gateway, key, ("fault.typed", {}))
    assert typed.is_error
    assert "cannot read" in _texts(typed)
    assert counted["lean"] == 1 and counted["sdk"] == 0


def test_structured_content_is_checked_against_the_output_schema_on_the_lean_path(
    gateway, gateway_catalog, fault_server, org_a, agent_key
):
    """Conforming structured content goes through; content that breaks the schema (wrong
    type, a missing required member, a value over its maximum) is refused as on the SDK
    path, whichever validator looked first (gateway.schema_check)."""
    fault_server.set_tools(
        [
            {
                "name": "structured",
                "description": "Answers with the structured content it is given.",
                "inputSchema": {"type": "object", "properties": {"value": {}}},
                "outputSchema": {
                    "type": "object",
                    "properties": {"n": {"type": "integer", "maximum": 10}},
                    "required": ["n"],
                },
            }
        ]
    )
    server = _fresh(http_server("fault", fault_server.url), "structured")
    gateway_catalog(org_a, servers=[server], policies=[_allow("fault")])
    _, key = agent_key("triage-bot")
    (good, wrong_type, missing, too_big), counted = _calls(
        gateway,
        key,
        ("fault.structured", {"value": {"n": 3}}),
        ("fault.structured", {"value": {"n": "three"}}),
        ("fault.structured", {"value": {"m": 3}}),
        ("fault.structured", {"value": {"n": 11}}),
    )
    assert not good.is_error and good.structured_content == {"n": 3}
    for refused in (wrong_type, missing, too_big):
        assert refused.is_error and "cannot read" in _texts(refused)
        assert refused.structured_content is None
    assert counted["lean"] == 4 and counted["sdk"] == 0


def test_response_over_the_size_cap_is_cut_off_on_the_lean_path(
    gateway, gateway_catalog, fault_server, org_a, agent_key, settings
):
    settings.CATALOG_MAX_RESPONSE_BYTES = 20_000
    gateway_catalog(
        org_a, servers=[http_server("fault", fault_server.url)], policies=[_allow("fault")]
    )
    _, key = agent_key("triage-bot")
    (big, small), counted = _calls(
        gateway, key, ("fault.echo", {"message": "x" * 50_000}), ("fault.echo", {"message": "ok"})
    )
    assert big.is_error and "larger than" in _texts(big)
    assert not small.is_error and _texts(small) == "ok"
    assert counted["lean"] == 2


def test_turned_off_every_call_goes_through_the_sdk_client(
    gateway, gateway_catalog, fault_server, org_a, agent_key, monkeypatch
):
    monkeypatch.setenv("GATEWAY_LEAN_UPSTREAM", "false")
    # A fresh pool key: the lean decision is made when a pooled client opens.
    server = _fresh(http_server("fault", fault_server.url), "sdk-only")
    gateway_catalog(org_a, servers=[server], policies=[_allow("fault")])
    _, key = agent_key("triage-bot")
    (echo,), counted = _calls(gateway, key, ("fault.echo", {"message": "sdk"}))
    assert _texts(echo) == "sdk"
    assert counted == {"lean": 0, "lean_fallback": 0, "sdk": 1}


def test_stdio_upstreams_keep_the_sdk_client(
    gateway, gateway_catalog, fault_server, org_a, agent_key
):
    stdio = fault_server.stdio()
    server = stdio_server("fault", stdio.command, stdio.args, stdio.env)
    gateway_catalog(org_a, servers=[server], policies=[_allow("fault")])
    _, key = agent_key("triage-bot")
    (echo,), counted = _calls(gateway, key, ("fault.echo", {"message": "stdio"}))
    assert _texts(echo) == "stdio"
    assert counted == {"lean": 0, "lean_fallback": 0, "sdk": 1}


def test_lean_http_client_keeps_the_catalog_egress_guard_and_static_headers():
    """With the catalog's config (every approved server in production) the lean client carries
    the static headers and the credential, and checks the catalog's egress rules before every
    new connection: a server whose URL is outside its declared hosts is refused, nothing sent."""
    from catalog.errors import UpstreamError
    from catalog.upstream import ServerConnectionConfig
    from gateway.http1 import Http1Client
    from gateway.lean import http_client_for
    from gateway.pool import UpstreamConfig

    catalog = ServerConnectionConfig(
        org_id=1,
        server_id=1,
        server_slug="tickets",
        transport="http",
        url="https://tickets.example.com/mcp",
        egress_hosts=("api.example.com",),
        static_headers={"X-Api-Key": "static-secret"},
    )
    config = UpstreamConfig(
        key="k", label="tickets", url=catalog.url, transport="http", catalog_config=catalog
    )

    async def scenario():
        async with http_client_for(config, {"Authorization": "Bearer user"}, 5.0) as http:
            assert isinstance(http, Http1Client)
            assert http.headers["x-api-key"] == "static-secret"
            assert http.headers["authorization"] == "Bearer user"
            with pytest.raises(UpstreamError) as refused:
                await http.post(catalog.url, content=b"{}")
            assert http.connections_opened == 0
            return refused.value.code

    assert asyncio.run(scenario()) == "egress_refused"
