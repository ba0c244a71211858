"""OpenTelemetry tracing of the gateway pipeline, exported to a real OTLP/HTTP receiver.

The receiver is a small HTTP server on a loopback port that accepts `POST /v1/traces`
(protobuf, decoded with opentelemetry-proto) and keeps every span. Calls go through the real
gateway (uvicorn, auth, policy, pool, audit) to a probe upstream (an SDK server in this
process) that records the trace context it receives, so the tests can also check that nothing
of the trace goes upstream unless `GATEWAY_TRACE_PROPAGATE_UPSTREAM` says so.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import uvicorn
from mcp.server import Server
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, ListToolsResult, TextContent, Tool
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from audit.models import AuditEvent
from gateway import tracing
from tests.gateway.conftest import bot_policy, http_server, mcp_client
from tests.peers.process import free_port

pytestmark = [pytest.mark.e2e]

# Distinctive argument key and value: neither may appear anywhere in what is exported.
ARG_KEY = "zq_note_for_upstream"
ARG_VALUE = "arg-value-7c1e9b-do-not-trace"
INBOUND_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INBOUND_PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{INBOUND_TRACE_ID}-{INBOUND_PARENT_ID}-01"
STEPS = ["authorize", "limit", "credential", "upstream", "filter", "audit"]


# --------------------------------------------------------------------------- OTLP receiver


@dataclass
class Receiver:
    url: str
    bodies: list[bytes] = field(default_factory=list)
    spans: list[dict[str, Any]] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def _attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_response(404)
                self.end_headers()
                return
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            with state.lock:
                state.bodies.append(body)
                for resource_spans in request.resource_spans:
                    state.resources.append(_attributes(resource_spans.resource.attributes))
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            state.spans.append(
                                {
                                    "name": span.name,
                                    "trace_id": span.trace_id.hex(),
                                    "span_id": span.span_id.hex(),
                                    "parent_id": span.parent_span_id.hex(),
                                    "kind": span.kind,
                                    "start": span.start_time_unix_nano,
                                    "status": span.status.code,
                                    "status_message": span.status.message,
                                    "attributes": _attributes(span.attributes),
                                    "events": [e.name for e in span.events],
                                }
                            )
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


# --------------------------------------------------------------------------- probe upstream


@dataclass
class Probe:
    url: str
    seen: list[dict[str, Any]]


@pytest.fixture(scope="module")
def probe() -> Iterator[Probe]:
    """An SDK upstream that records the `_meta` and `traceparent` header of every call."""
    seen: list[dict[str, Any]] = []
    schema = {"type": "object", "properties": {ARG_KEY: {"type": "string"}}}

    async def list_tools(_ctx: Any, _params: Any) -> ListToolsResult:
        return ListToolsResult(
            tools=[
                Tool(name="note", description="Take a note.", input_schema=schema),
                Tool(name="wipe", description="Wipe all notes.", input_schema=schema),
            ]
        )

    async def call_tool(ctx: Any, params: Any) -> CallToolResult:
        headers = getattr(ctx.request, "headers", None)
        seen.append(
            {
                "meta": dict(ctx.meta or {}),
                "header": headers.get("traceparent") if headers is not None else None,
            }
        )
        return CallToolResult(content=[TextContent(type="text", text="noted")])

    server = Server("probe", on_list_tools=list_tools, on_call_tool=call_tool)
    port = free_port()
    app = server.streamable_http_app(
        stateless_http=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        host="127.0.0.1",
    )
    runner = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not runner.started:
        assert time.monotonic() < deadline and thread.is_alive(), "probe did not start"
        time.sleep(0.05)
    yield Probe(url=f"http://127.0.0.1:{port}/mcp", seen=seen)
    runner.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def probe_catalog(gateway, gateway_catalog, probe, org_a):
    probe.seen.clear()
    gateway_catalog(
        org_a,
        servers=[http_server("probe", probe.url)],
        policies=[bot_policy("notes", tools=("probe.note",))],
    )
    return probe


@pytest.fixture
def tracing_reset() -> Iterator[None]:
    """Leave tracing as the gateway's lifespan set it (off, nothing propagated upstream)."""
    yield
    tracing.shutdown()
    tracing.setup(propagate_upstream=False)


async def _calls(url: str, key: str, **headers: str) -> tuple[Any, Any, MCPError]:
    async with mcp_client(url, key, **headers) as client:
        listed = await client.list_tools()
        called = await client.call_tool(
            "probe.note", {ARG_KEY: ARG_VALUE}, meta={"traceparent": TRACEPARENT}
        )
        with pytest.raises(MCPError) as denied:
            await client.call_tool("probe.wipe", {ARG_KEY: ARG_VALUE})
        return listed, called, denied.value


# --------------------------------------------------------------------------- tests


def test_pipeline_spans_reach_an_otlp_receiver(
    gateway, probe_catalog, agent_key, receiver, tracing_reset
):
    _, key = agent_key("triage-bot")
    assert tracing.setup(f"{receiver.url}/v1/traces") is True
    assert not isinstance(trace.get_tracer_provider(), type(tracing._provider))  # private

    listed, called, denied = asyncio.run(_calls(gateway.url("acme"), key, traceparent=TRACEPARENT))
    assert [t.name for t in listed.tools] == ["probe.note"]
    assert not called.is_error, called.content[0].text
    assert denied.code == -32010
    assert tracing.flush()

    spans = receiver.spans
    assert receiver.resources and receiver.resources[0]["service.name"] == "mcp-gateway"
    requests = sorted((s for s in spans if s["name"] == "mcp.request"), key=lambda s: s["start"])
    assert [r["attributes"]["mcp.method.name"] for r in requests] == [
        "tools/list",
        "tools/call",
        "tools/call",
    ]
    for request in requests:
        # The caller's traceparent is the parent; the request id is the audit record's.
        assert (request["trace_id"], request["parent_id"]) == (INBOUND_TRACE_ID, INBOUND_PARENT_ID)
        assert request["kind"] == trace.SpanKind.SERVER.value + 1  # OTLP enum is offset by one
        attrs = request["attributes"]
        assert (attrs["gateway.org"], attrs["gateway.agent"]) == ("acme", "triage-bot")
        assert attrs["gateway.request_id"]

    def children(parent: dict[str, Any]) -> list[dict[str, Any]]:
        found = [s for s in spans if s["parent_id"] == parent["span_id"]]
        return sorted(found, key=lambda s: s["start"])

    listing, allowed, refused = requests
    assert children(listing) == [] and listing["attributes"]["gateway.tools_listed"] == 1

    assert [c["name"] for c in children(allowed)] == [f"gateway.{s}" for s in STEPS]
    a = allowed["attributes"]
    assert a["gateway.exposed_tool"] == "probe.note"
    assert (a["gateway.server"], a["gateway.tool"]) == ("probe", "note")
    assert (a["gateway.decision"], a["gateway.outcome"]) == ("allow", "success")
    assert a["gateway.upstream_ms"] > 0 and a["gateway.latency_ms"] >= a["gateway.upstream_ms"]
    assert "error.type" not in a
    upstream = children(allowed)[3]
    assert upstream["attributes"] == {"gateway.server": "probe", "gateway.tool": "note"}
    assert children(allowed)[2]["attributes"] == {"gateway.auth_mode": "none"}

    assert [c["name"] for c in children(refused)] == ["gateway.authorize", "gateway.audit"]
    authorize = children(refused)[0]
    assert authorize["attributes"]["error.type"] == "policy"
    assert authorize["status"] == 2 and authorize["status_message"] == ""  # ERROR, no text
    r = refused["attributes"]
    assert (r["gateway.decision"], r["gateway.outcome"], r["error.type"]) == (
        "deny",
        "denied",
        "policy",
    )
    assert r["rpc.jsonrpc.error_code"] == -32010 and refused["status_message"] == ""

    # A trace is found from an audit row (and its log lines) by the request id.
    audited = list(AuditEvent.objects.filter(action="tool.call").order_by("id"))
    assert [e.request_id for e in audited] == [
        allowed["attributes"]["gateway.request_id"],
        refused["attributes"]["gateway.request_id"],
    ]

    # Never an argument key or value, the agent key, or an exception event in the export.
    for body in receiver.bodies:
        for secret in (ARG_KEY, ARG_VALUE, key, key[:16]):
            assert secret.encode() not in body
    assert all(not s["events"] for s in spans)
    assert {s["name"] for s in spans} <= {"mcp.request"} | {f"gateway.{s}" for s in STEPS}

    # The trace context went nowhere upstream (third party).
    assert probe_catalog.seen and all(
        "traceparent" not in seen["meta"] and seen["header"] is None for seen in probe_catalog.seen
    )


def test_trace_context_goes_upstream_only_when_enabled(
    gateway, probe_catalog, agent_key, receiver, tracing_reset
):
    _, key = agent_key("triage-bot")
    tracing.setup(f"{receiver.url}/v1/traces", propagate_upstream=True)

    async def call() -> None:
        async with mcp_client(gateway.url("acme"), key, traceparent=TRACEPARENT) as client:
            assert not (await client.call_tool("probe.note", {ARG_KEY: "x"})).is_error

    asyncio.run(call())
    assert tracing.flush()
    upstream = next(s for s in receiver.spans if s["name"] == "gateway.upstream")
    sent = probe_catalog.seen[-1]["meta"]["traceparent"]
    assert sent == f"00-{INBOUND_TRACE_ID}-{upstream['span_id']}-01"


def test_off_by_default_nothing_exported_no_provider(gateway, probe_catalog, agent_key, receiver):
    """The gateway's lifespan ran with no endpoint set (the test settings): nothing is set up,
    the span helper is the shared no-op, and the caller's trace context does not go upstream."""
    _, key = agent_key("triage-bot")
    assert not tracing.enabled() and tracing._provider is None
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
    assert tracing.step("authorize") is tracing.step("upstream", server="x") is tracing.NOOP

    listed, called, denied = asyncio.run(_calls(gateway.url("acme"), key, traceparent=TRACEPARENT))
    assert listed.tools and not called.is_error and denied.code == -32010
    time.sleep(0.2)
    assert receiver.bodies == [] and receiver.spans == []
    assert tracing._provider is None
    assert probe_catalog.seen and all(
        "traceparent" not in seen["meta"] and seen["header"] is None for seen in probe_catalog.seen
    )


def test_endpoint_settings():
    assert tracing.traces_endpoint() is None
    assert tracing.traces_endpoint("http://c:4318/") == "http://c:4318/v1/traces"
    assert tracing.traces_endpoint("http://c:4318", "http://t/x") == "http://t/x"
