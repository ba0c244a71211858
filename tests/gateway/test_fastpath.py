"""gateway.fastpath answers a plainly valid tools/call (either protocol era) without the SDK's
server stack. Each request here is sent twice, fast path on and off (the SDK then answers
everything), and the two answers must be the same: status, body, and what the audit trail
records. Requests the fast path must not answer (bad headers, bad envelopes, other methods)
reach the SDK, which is seen in the endpoint's `fast_served` counter staying put."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import gateway.asgi as gateway_asgi
from audit.models import AuditEvent
from policies.types import Redaction
from tests.gateway.conftest import bot_policy, http_server, post

pytestmark = [pytest.mark.e2e]

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "fastpath-test", "version": "1"},
}


@pytest.fixture
def endpoint(gateway, gateway_catalog, fault_server, org_a, agent_key):
    gateway_catalog(
        org_a,
        servers=[http_server("fault", fault_server.url)],
        policies=[
            bot_policy(
                "triage", tools=("fault.echo", "fault.fail", "fault.typed"), deny=("fault.crash",)
            )
        ],
    )
    _, key = agent_key("triage-bot")
    return gateway.url("acme"), key


def _call(name: str, arguments: Any, *, id_: Any = 1, meta: Any = ENVELOPE) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": params}


def _headers(name: str, **extra: str) -> dict[str, str]:
    return {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": name, **extra}


def _request(era: str, name: str, arguments: Any, **call: Any) -> tuple[dict, dict[str, str]]:
    """(body, headers) of a tools/call in `era` (the 2025 era: no envelope, no routing headers)."""
    if era == MODERN:
        return _call(name, arguments, **call), _headers(name)
    return _call(name, arguments, meta=None, **call), {"MCP-Protocol-Version": LEGACY}


def _audit_trail(since: int) -> list[tuple[Any, ...]]:
    return [
        (e.action, e.outcome, e.decision, e.error_class, e.tool, e.details.get("code"))
        for e in AuditEvent.objects.filter(id__gt=since).order_by("id")
    ]


def _both_ways(url: str, key: str, body: Any, headers: dict[str, str], raw: bytes | None = None):
    """(answer with the fast path, answer without it, fast-path calls served, audit of each)."""
    endpoint = gateway_asgi._endpoint
    assert endpoint is not None
    answers, trails = [], []
    served_before = endpoint.fast_served
    for fast in (True, False):
        endpoint.fast_path = fast
        last = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
        try:
            response = post(url, body, key=key, headers=headers, raw=raw)
        finally:
            endpoint.fast_path = True
        is_json = response.content and response.headers.get("content-type", "").startswith(
            "application/json"
        )
        # Each request has its own id; a -32050 message names it, so compare without it.
        text = re.sub(r"request id [0-9a-f]+", "request id <id>", response.text)
        answers.append((response.status_code, json.loads(text) if is_json else text))
        trails.append(_audit_trail(last))
    return answers[0], answers[1], endpoint.fast_served - served_before, trails


@pytest.mark.parametrize("era", [LEGACY, MODERN])
@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("fault.echo", {"message": "héllo"}),  # success
        ("fault.fail", {}),  # the upstream's isError result, passed through
        ("fault.echo", {"message": 42}),  # breaks the input schema: an isError result
        ("fault.crash", {}),  # denied by policy: -32010 with the reason
        ("fault.nope", {}),  # unknown tool
    ],
)
def test_valid_calls_are_answered_by_the_fast_path_exactly_as_by_the_sdk(
    endpoint, era, name, arguments
):
    url, key = endpoint
    body, headers = _request(era, name, arguments)
    fast, sdk, served, (fast_audit, sdk_audit) = _both_ways(url, key, body, headers)
    assert served == 1
    assert fast == sdk
    assert fast_audit == sdk_audit and len(fast_audit) == 1
    assert fast_audit[0][0] == "tool.call"


def test_a_successful_call_has_the_sdk_result_stamps(endpoint):
    url, key = endpoint
    (status, body), _, served, _ = _both_ways(
        url, key, _call("fault.echo", {"message": "ok"}, id_="req-7"), _headers("fault.echo")
    )
    assert served == 1 and status == 200
    assert body["id"] == "req-7"
    result = body["result"]
    assert result["content"] == [{"type": "text", "text": "ok"}]
    assert result["resultType"] == "complete"
    # The upstream's own serverInfo stamp in the result wins over ours, as on the SDK path.
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "fault-server"


@pytest.mark.parametrize("era", [LEGACY, MODERN])
def test_result_redaction_applies_on_the_fast_path_as_on_the_sdk_path(
    gateway, gateway_catalog, fault_server, org_a, agent_key, era
):
    """The fast path answers with the upstream's already-validated wire form when nothing
    changed the result; a policy's `redact.results` changes it, so the masked result is sent."""
    gateway_catalog(
        org_a,
        servers=[http_server("fault", fault_server.url)],
        policies=[
            bot_policy("triage", tools=("fault.echo",), redact=Redaction(results=("email",)))
        ],
    )
    _, key = agent_key("triage-bot")
    secret = json.dumps({"email": "alice@example.com", "n": 1})
    body, headers = _request(era, "fault.echo", {"message": secret})
    fast, sdk, served, _ = _both_ways(gateway.url("acme"), key, body, headers)
    assert served == 1
    assert fast == sdk
    status, answer = fast
    text = answer["result"]["content"][0]["text"]
    assert status == 200 and "alice@example.com" not in text
    assert json.loads(text)["n"] == 1 and json.loads(text)["email"] != "alice@example.com"


ROUTED_TOOL = {
    "name": "routed",
    "description": "Declares an Mcp-Param header for its region argument.",
    "inputSchema": {
        "type": "object",
        "properties": {"region": {"type": "string", "x-mcp-header": "Region"}, "n": {}},
    },
}


@pytest.mark.parametrize(
    ("case", "arguments", "extra_headers", "fast_served"),
    [
        ("header matches its argument", {"region": "eu-west"}, {"Mcp-Param-Region": "eu-west"}, 1),
        ("header disagrees", {"region": "eu-west"}, {"Mcp-Param-Region": "us-east"}, 0),
        ("header missing", {"region": "eu-west"}, {}, 0),
        ("header without its argument", {"n": 1}, {"Mcp-Param-Region": "eu-west"}, 0),
        ("neither", {"n": 1}, {}, 1),
    ],
)  # fmt: skip
def test_mcp_param_headers_are_checked_against_an_annotated_schema(
    gateway, gateway_catalog, fault_server, org_a, agent_key, case, arguments, extra_headers,
    fast_served,
):  # fmt: skip
    """2026-07-28: a tool whose input schema annotates a property with `x-mcp-header` gets
    its Mcp-Param-* header compared with the argument; the fast path serves only agreeing
    requests, and the SDK refuses the others (HEADER_MISMATCH) exactly as without it."""
    fault_server.set_tools([ROUTED_TOOL])
    try:
        server = http_server("fault", fault_server.url)
        gateway_catalog(
            org_a, servers=[server], policies=[bot_policy("triage", tools=("fault.routed",))]
        )
    finally:
        fault_server.reset_tools()
    _, key = agent_key("triage-bot")
    body = _call("fault.routed", arguments)
    headers = _headers("fault.routed", **extra_headers)
    fast, sdk, served, (fast_audit, sdk_audit) = _both_ways(gateway.url("acme"), key, body, headers)
    assert served == fast_served, case
    assert fast == sdk, case
    assert fast_audit == sdk_audit, case
    if fast_served:
        assert fast[0] == 200 and "error" not in fast[1], case
    else:
        assert fast[1]["error"]["code"] == -32020, case  # HEADER_MISMATCH


def test_mcp_param_headers_mean_nothing_to_a_tool_that_declares_none(endpoint):
    """A stray Mcp-Param-* header on a tool without `x-mcp-header` annotations: nothing to
    compare, so the call is served (fast) as the SDK serves it."""
    url, key = endpoint
    body = _call("fault.echo", {"message": "x"})
    headers = _headers("fault.echo", **{"Mcp-Param-Region": "eu-west"})
    fast, sdk, served, _ = _both_ways(url, key, body, headers)
    assert served == 1
    assert fast == sdk and fast[0] == 200 and "error" not in fast[1]


@pytest.mark.parametrize(
    ("case", "body", "headers"),
    [
        ("name header disagrees", _call("fault.echo", {"message": "x"}), _headers("fault.fail")),
        ("no _meta envelope", _call("fault.echo", {"message": "x"}, meta=None), _headers("fault.echo")),
        ("unsupported version in _meta",
         _call("fault.echo", {"message": "x"},
               meta={**ENVELOPE, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}),
         _headers("fault.echo")),
        ("params not an object", {**_call("fault.echo", {}), "params": [1]}, _headers("fault.echo")),
        ("arguments not an object", _call("fault.echo", "text"), _headers("fault.echo")),
        ("id is null", _call("fault.echo", {"message": "x"}, id_=None), _headers("fault.echo")),
        ("batch", [_call("fault.echo", {"message": "x"})], _headers("fault.echo")),
        ("notification", {"jsonrpc": "2.0", "method": "tools/call", "params": {}},
         _headers("fault.echo")),
        ("no JSON accepted", _call("fault.echo", {"message": "x"}),
         _headers("fault.echo", Accept="text/event-stream")),
        ("not JSON content", _call("fault.echo", {"message": "x"}),
         _headers("fault.echo", **{"Content-Type": "text/plain"})),
    ],
)  # fmt: skip
def test_requests_the_sdk_refuses_are_left_to_the_sdk(endpoint, case, body, headers):
    url, key = endpoint
    fast, sdk, served, (fast_audit, sdk_audit) = _both_ways(url, key, body, headers)
    assert served == 0, case
    assert fast == sdk, case
    assert fast_audit == sdk_audit, case
    assert not any(action == "tool.call" for action, *_ in fast_audit), case


def test_unusual_but_valid_envelopes_are_left_to_the_sdk_which_serves_them(endpoint):
    url, key = endpoint
    body = {**_call("fault.echo", {"message": "x"}), "extra": 1}
    fast, sdk, served, (fast_audit, sdk_audit) = _both_ways(url, key, body, _headers("fault.echo"))
    assert served == 0
    assert fast == sdk and fast[0] == 200
    assert fast_audit == sdk_audit and fast_audit[0][0] == "tool.call"


def test_malformed_json_is_left_to_the_sdk(endpoint):
    url, key = endpoint
    fast, sdk, served, _ = _both_ways(
        url, key, None, _headers("fault.echo"), raw=b'{"jsonrpc": "2.0", "id": 1, "method": '
    )
    assert served == 0 and fast == sdk and fast[1]["error"]["code"] == -32700


@pytest.mark.parametrize(
    ("case", "body", "headers"),
    [
        ("2026 envelope on the 2025 era", _call("fault.echo", {"message": "x"}),
         {"MCP-Protocol-Version": LEGACY}),
        ("not JSON", None, {"MCP-Protocol-Version": LEGACY}),
        ("UTF-16 body", None, {"MCP-Protocol-Version": LEGACY}),
        ("other method", {"jsonrpc": "2.0", "id": 3, "method": "tools/list"},
         {"MCP-Protocol-Version": LEGACY}),
        ("batch", [_call("fault.echo", {"message": "x"}, meta=None)],
         {"MCP-Protocol-Version": LEGACY}),
        ("params not an object", {**_call("fault.echo", {}, meta=None), "params": 5},
         {"MCP-Protocol-Version": LEGACY}),
        ("unknown handshake version", _call("fault.echo", {"message": "x"}, meta=None),
         {"MCP-Protocol-Version": "2025-01-01"}),
    ],
)  # fmt: skip
def test_2025_era_requests_the_sdk_must_judge_are_left_to_it(endpoint, case, body, headers):
    url, key = endpoint
    raw = None
    if case == "not JSON":
        raw = b'{"jsonrpc": "2.0", "id": 1, "method": '
    elif case == "UTF-16 body":
        raw = json.dumps(_call("fault.echo", {"message": "x"}, meta=None)).encode("utf-16")
    fast, sdk, served, (fast_audit, sdk_audit) = _both_ways(url, key, body, headers, raw=raw)
    assert served == 0, case
    assert fast == sdk, case
    assert fast_audit == sdk_audit, case


def test_tracing_on_sends_calls_through_the_sdk(endpoint, monkeypatch):
    from gateway import tracing

    url, key = endpoint
    monkeypatch.setattr(tracing, "enabled", lambda: True)
    _, _, served, _ = _both_ways(
        url, key, _call("fault.echo", {"message": "x"}), _headers("fault.echo")
    )
    assert served == 0


def test_fast_answers_carry_the_request_id_of_their_audit_record(endpoint):
    url, key = endpoint
    response = post(
        url,
        _call("fault.echo", {"message": "x"}),
        key=key,
        headers=_headers("fault.echo", **{"X-Request-ID": "trace-me-123"}),
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "trace-me-123"
    event = AuditEvent.objects.filter(action="tool.call").latest("id")
    assert event.request_id == "trace-me-123"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


# Found by this test on PostgreSQL: a NUL in an argument cannot be stored in the audit row's
# jsonb, so the call fails closed (-32050) on both paths; kept as a fixed example.
@example(
    era=LEGACY,
    request_id=0,
    name="fault.echo",
    arguments={"message": "\x00"},
    meta="envelope",
    name_header="same",
)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    era=st.sampled_from([LEGACY, MODERN]),
    request_id=st.integers(-5, 2**40)
    | st.text(max_size=6)
    | st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False),
    name=st.sampled_from(["fault.echo", "fault.fail", "fault.crash", "fault.nope"])
    | st.text(max_size=8),
    arguments=st.none()
    | st.fixed_dictionaries({}, optional={"message": _json_values, "extra": _json_values})
    | _json_values,
    meta=st.sampled_from(["envelope", "none", "no capabilities", "old version", "progress"]),
    name_header=st.sampled_from(["same", "other", "absent"]),
)
def test_fuzz_fast_path_answers_exactly_as_the_sdk(
    endpoint, era, request_id, name, arguments, meta, name_header
):
    """Random tools/call requests, mostly well-formed: whatever the fast path answers, the SDK
    answers the same way, and the audit trail records the same."""
    url, key = endpoint
    metas = {
        "envelope": ENVELOPE,
        "none": None,
        "no capabilities": {"io.modelcontextprotocol/protocolVersion": MODERN},
        "old version": {**ENVELOPE, "io.modelcontextprotocol/protocolVersion": LEGACY},
        "progress": {"progressToken": 7},
    }
    body = _call(name, arguments, id_=request_id, meta=metas[meta])
    headers = {"MCP-Protocol-Version": era}
    if era == MODERN:
        headers["Mcp-Method"] = "tools/call"
        if name_header == "same":
            headers["Mcp-Name"] = name
        elif name_header == "other":
            headers["Mcp-Name"] = "fault.other"
    headers = {k: v for k, v in headers.items() if v and v.isascii() and v.isprintable()}
    fast, sdk, _, (fast_audit, sdk_audit) = _both_ways(url, key, body, headers)
    assert fast == sdk
    assert fast_audit == sdk_audit
