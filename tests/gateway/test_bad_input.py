"""Bad input at the MCP endpoint: a precise JSON-RPC error or 4xx, nothing forwarded upstream,
an audit record of the refusal, never a 500. Ends with a hypothesis fuzz test."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.models import AuditEvent
from policies.types import Limits
from tests.gateway.conftest import bot_policy, http_server, mcp_client, post

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def endpoint(gateway, gateway_catalog, fault_server, org_a, agent_key):
    gateway_catalog(
        org_a,
        servers=[http_server("fault", fault_server.url)],
        policies=[bot_policy("triage", tools=("fault.echo", "fault.slow"), deny=("fault.crash",))],
    )
    _, key = agent_key("triage-bot")
    return gateway.url("acme"), key


def _call(name, arguments, id_=1):
    return {
        "jsonrpc": "2.0",
        "id": id_,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }


def _refusals():
    return list(AuditEvent.objects.filter(action="mcp.request_refused").order_by("id"))


def test_malformed_json_is_a_parse_error_and_audited(endpoint):
    url, key = endpoint
    response = post(url, None, key=key, raw=b'{"jsonrpc": "2.0", "id": 1, "method": ')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32700
    [event] = _refusals()
    assert event.details["code"] == -32700 and event.decision == "deny"


def test_batch_arrays_are_refused(endpoint):
    url, key = endpoint
    batch = [_call("fault.echo", {"message": "a"}), _call("fault.echo", {"message": "b"}, 2)]
    response = post(url, batch, key=key)
    assert response.status_code == 400
    # -32600 on the 2026 path; the SDK's 2025 path answers -32602 ("Validation error").
    assert response.json()["error"]["code"] in (-32600, -32602)
    assert not AuditEvent.objects.filter(action="tool.call").exists()  # nothing was called
    assert len(_refusals()) == 1


def test_unknown_method_is_method_not_found(endpoint):
    url, key = endpoint
    response = post(url, {"jsonrpc": "2.0", "id": 7, "method": "tools/explode"}, key=key)
    assert response.status_code in (200, 404)
    assert response.json()["error"]["code"] == -32601
    assert len(_refusals()) == 1


@pytest.mark.parametrize("version", ["1999-01-01", "2026-13-99", "garbage"])
def test_wrong_protocol_version_header_is_refused(endpoint, version):
    url, key = endpoint
    response = post(
        url,
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        key=key,
        headers={"MCP-Protocol-Version": version, "Mcp-Method": "tools/list"},
    )
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["code"] in (-32022, -32600, -32602)
    assert len(_refusals()) == 1


def test_modern_header_that_disagrees_with_the_body_is_refused(endpoint):
    url, key = endpoint
    body = _call("fault.echo", {"message": "x"})
    body["params"]["_meta"] = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    response = post(
        url,
        body,
        key=key,
        headers={
            "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": "tools/list",
            "Mcp-Name": "fault.echo",
        },
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32020
    assert not AuditEvent.objects.filter(action="tool.call").exists()


def test_oversized_body_is_413(endpoint):
    url, key = endpoint
    body = json.dumps(_call("fault.echo", {"message": "x" * (2 * 1024 * 1024)})).encode()
    response = post(url, None, key=key, raw=body)
    assert response.status_code == 413
    assert not AuditEvent.objects.filter(action="tool.call").exists()
    assert len(_refusals()) == 1


def test_schema_breaking_arguments_are_a_tool_error_not_forwarded(endpoint):
    url, key = endpoint

    async def scenario():
        async with mcp_client(url, key) as client:
            missing = await client.call_tool("fault.echo", {})
            wrong_type = await client.call_tool("fault.slow", {"seconds": "soon"})
            too_big = await client.call_tool("fault.slow", {"seconds": 10_000})
            return missing, wrong_type, too_big

    missing, wrong_type, too_big = asyncio.run(scenario())
    assert missing.is_error and "'message' is a required property" in missing.content[0].text
    assert wrong_type.is_error and "seconds" in wrong_type.content[0].text
    assert too_big.is_error and "maximum" in too_big.content[0].text
    events = AuditEvent.objects.filter(action="tool.call")
    assert events.count() == 3
    for event in events:
        assert (event.error_class, event.decision, event.outcome) == (
            "validation",
            "deny",
            "denied",
        )
        assert event.upstream_latency_ms is None  # nothing went upstream


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
def test_unknown_and_denied_tools_are_jsonrpc_errors(endpoint, mode):
    from mcp.shared.exceptions import MCPError

    url, key = endpoint

    async def scenario():
        async with mcp_client(url, key, mode=mode) as client:
            with pytest.raises(MCPError) as unknown:
                await client.call_tool("nothing.here", {})
            with pytest.raises(MCPError) as denied:
                await client.call_tool("fault.crash", {})
            return unknown.value, denied.value

    unknown, denied = asyncio.run(scenario())
    assert unknown.code == -32602 and "Unknown tool: nothing.here" in unknown.message
    assert denied.code == -32010 and "denied by policy 'triage'" in denied.message
    assert AuditEvent.objects.filter(action="tool.call", decision="deny").count() == 2


def test_huge_argument_strings_are_bounded_in_the_audit(endpoint):
    url, key = endpoint
    huge = "y" * 500_000

    async def scenario():
        async with mcp_client(url, key) as client:
            return await client.call_tool("fault.echo", {"message": huge})

    result = asyncio.run(scenario())
    assert not result.is_error and len(result.content[0].text) == 500_000
    event = AuditEvent.objects.get(action="tool.call")
    assert len(json.dumps(event.details)) < 10_000


def test_rate_limit_names_the_limit_and_when_to_retry(
    gateway, gateway_catalog, fault_server, org_a, agent_key
):
    from mcp.shared.exceptions import MCPError

    gateway_catalog(
        org_a,
        servers=[http_server("fault", fault_server.url)],
        policies=[bot_policy("limited", tools=("fault.echo",), limits=Limits(per_minute=2))],
    )
    _, key = agent_key("triage-bot")

    async def scenario():
        async with mcp_client(gateway.url("acme"), key, mode="2026-07-28") as client:
            for _ in range(2):
                assert not (await client.call_tool("fault.echo", {"message": "ok"})).is_error
            with pytest.raises(MCPError) as limited:
                await client.call_tool("fault.echo", {"message": "one too many"})
            return limited.value

    error = asyncio.run(scenario())
    assert error.code == -32029
    assert "at most 2 calls per minute" in error.message
    assert 1 <= error.data["retryAfterSeconds"] <= 60
    last = AuditEvent.objects.filter(action="tool.call").order_by("-id").first()
    assert (last.error_class, last.decision) == ("rate_limit", "deny")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
_messages = st.fixed_dictionaries(
    {
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]),
        "method": st.sampled_from(
            ["tools/list", "tools/call", "initialize", "ping", "resources/list", "x"]
        )
        | st.text(max_size=15),
    },
    optional={
        "id": st.integers() | st.text(max_size=8) | st.none(),
        "params": st.fixed_dictionaries(
            {},
            optional={
                "name": st.sampled_from(["fault.echo", "fault.slow", "fault.crash", "x.y"])
                | st.text(max_size=10),
                "arguments": _json,
                "_meta": _json,
            },
        )
        | _json,
    },
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=_messages | _json, modern=st.booleans())
def test_fuzz_random_jsonrpc_never_gets_a_500(endpoint, body, modern):
    url, key = endpoint
    headers = {}
    if modern:
        method = body.get("method") if isinstance(body, dict) else None
        headers = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": str(method or "")[:50]}
        if isinstance(body, dict) and isinstance(body.get("params"), dict):
            name = body["params"].get("name")
            if isinstance(name, str) and name.isascii() and name.isprintable():
                headers["Mcp-Name"] = name
    headers = {k: v for k, v in headers.items() if v.isascii() and v.isprintable()}
    response = post(url, body, key=key, headers=headers)
    assert response.status_code < 500, response.text
    if response.status_code not in (202,) and response.content:
        assert isinstance(response.json(), dict)
