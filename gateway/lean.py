"""The lean upstream call: `tools/call` as one JSON-RPC POST on a pooled keep-alive connection.

The SDK `Client` costs about 1.3 ms of CPU per call (a task and memory streams per request,
the JSON-RPC dispatcher, pydantic round trips); the same POST on gateway.http1's client costs
a fraction of that. For HTTP upstreams the pool therefore sends `tools/call` itself, next to the pooled
SDK client, which still does everything else: era negotiation (`server/discover` or
`initialize`), the tool listing for the drift check and the output-schema cache, and every call
the lean path does not understand.

What it keeps from the SDK path (tests/gateway/test_faults.py and test_lean_upstream.py):
- egress: the catalog's guard (declared hosts, address ranges) on every new connection, which
  then goes to exactly the checked addresses (gateway.http1), the same headers (static secret or the user's token; never the agent's key);
- size: the body is counted while it is read and cut off over CATALOG_MAX_RESPONSE_BYTES;
- JSON and SSE responses (server-to-client requests on an SSE stream are answered as the SDK
  client without callbacks answers them: `ping` with an empty result, anything else refused);
- the JSON-RPC error, the HTTP status (404 on a 2025 session: the session is gone, treated as a
  lost connection), the result validated against the negotiated protocol version's schema and
  then against the tool's output schema (the SDK session's own check and cache), `isError`
  passed through;
- transport failures raise httpx2's exceptions, which the pool classifies as before (retry for
  read-only/idempotent tools, circuit breaker); a stream that ends before the response is a
  lost connection.

Protocol eras: on 2026-07-28 (stateless) every POST carries `MCP-Protocol-Version`,
`Mcp-Method`, `Mcp-Name` and the tool's `Mcp-Param-*` headers; a -32020 header mismatch is
handed back to the SDK client, which re-lists and resends once. On 2025-11-25 and older the lean
client runs its own `initialize` once when it opens (a stateful server gives it a session of
its own) and then sends plain POSTs with the session id.

`GATEWAY_LEAN_UPSTREAM=false` turns it off (every call through the SDK client).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import httpx2
import pydantic_core
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import encode_header_value
from mcp_types import (
    CONNECTION_CLOSED,
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    CallToolResult,
)
from mcp_types import methods as mcp_methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from pydantic import PrivateAttr

from config.env import env_bool
from gateway import schema_check, tracing
from gateway.conf import django_setting
from gateway.http1 import Http1Client, Response

logger = logging.getLogger(__name__)

CLIENT_INFO = {"name": "mcp-governance-gateway", "version": "1.0.0"}
_JSON = "application/json"
_SSE = "text/event-stream"


def lean_enabled() -> bool:
    return env_bool("GATEWAY_LEAN_UPSTREAM", default=True)


class LeanUnsupported(Exception):
    """The lean path cannot make this call (nothing was executed upstream): use the SDK client."""


class ResponseTooLarge(Exception):
    def __init__(self, cap: int) -> None:
        super().__init__(
            f"The server sent a response larger than {cap // 1_000_000} MB "
            "(CATALOG_MAX_RESPONSE_BYTES)."
        )


def _max_bytes() -> int:
    return int(django_setting("CATALOG_MAX_RESPONSE_BYTES"))


try:  # the SDK's client span (a no-op unless a global tracer provider records it)
    from mcp.shared._otel import otel_span
except ImportError:  # pragma: no cover - a future SDK without it

    @contextlib.contextmanager
    def otel_span(name: str, **_kwargs: Any) -> Any:
        yield None


try:  # the SDK's own trimming of fields a later revision added (private; optional)
    from mcp.client.session import _later_revision_fields
except ImportError:  # pragma: no cover - a future SDK without it

    def _later_revision_fields(method: str, version: str) -> frozenset[str]:
        return frozenset()


class LeanUpstream:
    """`tools/call` for one pooled (server, credential), beside its connected SDK `Client`."""

    def __init__(self, url: str, http: Http1Client, client: Client, protocol_version: str) -> None:
        self.url = url
        self.http = http
        self.client = client
        self.protocol_version = protocol_version
        self.modern = protocol_version in MODERN_PROTOCOL_VERSIONS
        self.session_id: str | None = None
        self._ids = itertools.count(1)
        self._max_bytes = _max_bytes()

    # ------------------------------------------------------------------ requests

    def _headers(self, method: str, name: str | None = None) -> dict[str, str]:
        headers = {
            "accept": f"{_JSON}, {_SSE}",
            "content-type": _JSON,
            "mcp-protocol-version": self.protocol_version,
        }
        if self.modern:
            headers["mcp-method"] = method
            if name is not None:
                headers["mcp-name"] = encode_header_value(name)
        if self.session_id:
            headers["mcp-session-id"] = self.session_id
        return headers

    async def _request(
        self,
        method: str,
        params: dict[str, Any],
        headers: dict[str, str],
        *,
        capture_session: bool = False,
    ) -> dict[str, Any]:
        """One JSON-RPC request; returns its `result` or raises MCPError / httpx2 errors."""
        request_id = next(self._ids)
        self._max_bytes = _max_bytes()  # read per request: an operator's change applies at once
        body = pydantic_core.to_json(
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        )
        # The client's open/close_response rather than its `stream` context manager: the
        # same exchange without an async generator per call.
        response = await self.http.open("POST", self.url, content=body, headers=headers)
        try:
            status = response.status_code
            content_type = response.headers.get("content-type", "").lower()
            if capture_session:
                self.session_id = response.headers.get("mcp-session-id") or None
            if 300 <= status < 400:
                raise MCPError(
                    INVALID_REQUEST,
                    f"the server answered with a redirect (HTTP {status}), which is not followed",
                )
            if status >= 400:
                if content_type.startswith(_JSON):
                    message = _parse_json(await self._read(response))
                    if isinstance(message, dict) and isinstance(message.get("error"), dict):
                        raise _mcp_error(message["error"])
                if status == 404 and self.session_id is not None:
                    # The upstream forgot our session (it restarted): as good as a lost connection.
                    raise MCPError(CONNECTION_CLOSED, "Session terminated")
                if status in (401, 403):
                    raise MCPError(
                        INTERNAL_ERROR,
                        f"it refused the gateway's credentials (HTTP {status})",
                    )
                raise MCPError(INTERNAL_ERROR, f"Server returned an error response (HTTP {status})")
            if status == 202:
                raise MCPError(INVALID_REQUEST, "server answered a request with 202 Accepted")
            if content_type.startswith(_JSON):
                message = _parse_json(await self._read(response))
                return _outcome(message, request_id)
            if content_type.startswith(_SSE):
                return await self._read_sse(response, request_id)
            raise MCPError(INVALID_REQUEST, f"Unexpected content type: {content_type[:100]}")
        finally:
            self.http.close_response(response)

    async def _read(self, response: Response) -> bytes:
        chunks: list[bytes] = []
        total = 0
        async for chunk in response.aiter_bytes():
            total += len(chunk)
            if total > self._max_bytes:
                raise ResponseTooLarge(self._max_bytes)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _read_sse(self, response: Response, request_id: int) -> dict[str, Any]:
        total = 0
        buffer = b""
        data: list[bytes] = []
        event = b""
        async for chunk in response.aiter_bytes():
            total += len(chunk)
            if total > self._max_bytes:
                raise ResponseTooLarge(self._max_bytes)
            buffer += chunk
            while True:
                newline = buffer.find(b"\n")
                if newline < 0:
                    break
                line = buffer[:newline].rstrip(b"\r")
                buffer = buffer[newline + 1 :]
                if line:
                    field, _, value = line.partition(b":")
                    if value.startswith(b" "):
                        value = value[1:]
                    if field == b"data":
                        data.append(value)
                    elif field == b"event":
                        event = value
                    continue
                # A blank line ends an event.
                payload = b"\n".join(data).strip()
                # An event without data (e.g. the 2025-11-25 priming event) carries nothing.
                if payload and event in (b"", b"message"):
                    message = _parse_json(payload)
                    if (
                        isinstance(message, dict)
                        and message.get("id") == request_id
                        and ("result" in message or "error" in message)
                    ):
                        return _outcome(message, request_id)
                    if isinstance(message, dict) and "method" in message and "id" in message:
                        await self._answer_server_request(message)
                    # Notifications (progress, logs) are not relayed, as on the SDK path.
                data, event = [], b""
        raise httpx2.RemoteProtocolError("the SSE stream ended without a response")

    async def _answer_server_request(self, message: dict[str, Any]) -> None:
        """A request from the server inside the call's SSE stream (2025 era): answered as the
        SDK client without sampling/elicitation/roots callbacks answers it."""
        if message.get("method") == "ping":
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": message["id"], "result": {}}
        else:
            reply = {
                "jsonrpc": "2.0",
                "id": message["id"],
                "error": {
                    "code": INVALID_REQUEST,
                    "message": f"{message.get('method')} is not supported by the gateway",
                },
            }
        headers = {k: v for k, v in self._headers("").items() if k != "mcp-method"}
        with contextlib.suppress(httpx2.HTTPError):
            await self.http.post(self.url, content=pydantic_core.to_json(reply), headers=headers)

    # ------------------------------------------------------------------ handshake

    async def initialize(self) -> None:
        """The 2025-era handshake, once per lean client (a stateful server gives us a session)."""
        if self.modern:
            return
        result = await self._request(
            "initialize",
            {
                "protocolVersion": self.protocol_version,
                "capabilities": {},
                "clientInfo": CLIENT_INFO,
            },
            {"accept": f"{_JSON}, {_SSE}", "content-type": _JSON},
            capture_session=True,
        )
        if result.get("protocolVersion") != self.protocol_version:
            raise LeanUnsupported(
                f"the server answered initialize with {result.get('protocolVersion')!r}"
            )
        notification = pydantic_core.to_json(
            {"jsonrpc": "2.0", "method": "notifications/initialized"}
        )
        response = await self.http.post(
            self.url, content=notification, headers=self._headers("notifications/initialized")
        )
        if response.status_code >= 400:
            raise LeanUnsupported(f"notifications/initialized got HTTP {response.status_code}")

    async def terminate(self) -> None:
        if self.session_id:
            with contextlib.suppress(Exception):
                await self.http.delete(self.url, headers=self._headers(""))

    # ------------------------------------------------------------------ tools/call

    async def call_tool(self, name: str, arguments: Mapping[str, Any]) -> CallToolResult:
        """Raises LeanUnsupported (nothing executed: use the SDK client), MCPError for a JSON-RPC
        error, ResponseTooLarge, catalog UpstreamError (egress), httpx2 transport errors, and
        RuntimeError / pydantic.ValidationError for a result that does not conform."""
        session = self.client.session
        # The SDK session's own stamp: on 2026-07-28 the `_meta` protocol version, client info
        # and capabilities, and the MCP-Protocol-Version / Mcp-Method / Mcp-Name / Mcp-Param-*
        # headers; on the handshake era the MCP-Protocol-Version header.
        data: dict[str, Any] = {
            "method": "tools/call",
            "params": {"name": name, "arguments": dict(arguments)},
        }
        opts: dict[str, Any] = {}
        session._stamp(data, opts)  # type: ignore[arg-type]
        headers = self._headers("tools/call", name)
        for key, value in (opts.get("headers") or {}).items():
            headers[key.lower()] = value
        params = data["params"]
        try:
            # As the SDK's dispatcher does: a client span, and the W3C trace context injected
            # into `_meta` through the global propagator (gateway.tracing decides whether it
            # goes upstream at all).
            if _observed():
                with otel_span(
                    f"MCP send tools/call {name}",
                    kind=SpanKind.CLIENT,
                    attributes={"mcp.method.name": "tools/call"},
                ):
                    meta = dict(params.get("_meta") or {})
                    propagate.inject(meta)
                    if meta:
                        params["_meta"] = meta
                    raw = await self._request("tools/call", params, headers)
            else:  # neither would do anything: skip their cost
                raw = await self._request("tools/call", params, headers)
        except MCPError as exc:
            if self.modern and exc.code == HEADER_MISMATCH:
                raise LeanUnsupported(
                    "header mismatch: the SDK client re-lists and resends"
                ) from exc
            raise
        result_type = raw.get("resultType", "complete")
        if result_type != "complete":
            # An InputRequiredResult or an extension's claimed shape: the gateway relays neither.
            raise RuntimeError(f"the server answered tools/call with a {result_type!r} result")
        ttl = raw.get("ttlMs")
        if isinstance(ttl, int | float) and not isinstance(ttl, bool) and ttl < 0:
            raw["ttlMs"] = 0
        # Validated against this version's schema, and kept in the shape it gives.
        wire = plain_text_wire(raw, self.protocol_version)
        if wire is None:
            with contextlib.suppress(KeyError):
                wire = mcp_methods.serialize_server_result("tools/call", self.protocol_version, raw)
        foreign = _later_revision_fields("tools/call", self.protocol_version)
        if foreign and not foreign.isdisjoint(raw):
            raw = {k: v for k, v in raw.items() if k not in foreign}
        if wire is None:  # a version without a result schema here: the SDK model checks it
            result: UpstreamResult | WireResult = UpstreamResult.model_validate(raw, by_name=False)
        else:
            result = WireResult(raw, self.protocol_version, wire)
        if not result.is_error and not _output_conforms(session, name, result):
            # The SDK's output-schema check (it words the errors).
            await session.validate_tool_result(name, as_model(result))
        return result


# The protocol versions whose tools/call result `plain_text_wire` shapes as
# `serialize_server_result` does (tests/gateway/test_upstream_result.py compares the two on
# every version the SDK knows), and those of them whose results carry `resultType`.
_PLAIN_TEXT_VERSIONS = frozenset(
    ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28")
)
_RESULT_TYPE_VERSIONS = frozenset(("2026-07-28",))
_PLAIN_TEXT_KEYS = frozenset(("content", "isError", "structuredContent", "_meta"))
_PLAIN_TEXT_KEYS_TYPED = _PLAIN_TEXT_KEYS | {"resultType"}
_JSON_DEPTH = 32
_SERVER_INFO = "io.modelcontextprotocol/serverInfo"


def _plain_json(value: Any, depth: int = 0) -> bool:
    """True when `value` is JSON as the SDK's JSON-mode dump returns it unchanged: objects
    with string keys, arrays, strings, integers, finite floats, booleans, null (a non-finite
    float would come back as null, a lone surrogate rewritten or refused). Not too deep to
    check here."""
    kind = type(value)
    if kind is str:
        return _utf8(value)
    if kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return math.isfinite(value)
    if depth >= _JSON_DEPTH:
        return False
    if kind is dict:
        # A loop rather than all() over a generator: this runs on every result.
        for key, item in value.items():
            if type(key) is not str or not _utf8(key) or not _plain_json(item, depth + 1):
                return False
        return True
    if kind is list:
        return all(_plain_json(item, depth + 1) for item in value)
    return False


def _utf8(text: str) -> bool:
    """False for a string with a lone surrogate, which the dump rewrites or refuses."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def plain_text_wire(raw: dict[str, Any], version: str) -> dict[str, Any] | None:
    """What `serialize_server_result("tools/call", version, raw)` returns, for the commonest
    answer only: text blocks (`type` and `text`, nothing else), an optional boolean `isError`,
    optional `structuredContent` and `_meta` objects of plain JSON, and on versions that have
    it `resultType: "complete"`; None for anything else (the SDK's validation decides it).
    The SDK validates the result into its pydantic model and dumps it again, the largest single
    step of a call's result handling; this checks the same shape by exact types (no coercion:
    anything pydantic would have to coerce is left to it) and builds the dump's key order."""
    if version not in _PLAIN_TEXT_VERSIONS:
        return None
    typed = version in _RESULT_TYPE_VERSIONS
    if typed:
        if raw.get("resultType") != "complete" or not raw.keys() <= _PLAIN_TEXT_KEYS_TYPED:
            return None
    elif not raw.keys() <= _PLAIN_TEXT_KEYS:
        return None
    content = raw.get("content")
    if type(content) is not list:
        return None
    blocks = []
    for block in content:
        if type(block) is not dict or len(block) != 2 or block.get("type") != "text":
            return None
        text = block.get("text")
        if type(text) is not str:
            return None
        blocks.append({"text": text, "type": "text"})  # the model's field order
    wire: dict[str, Any] = {}
    if "_meta" in raw:
        meta = raw["_meta"]
        # A null member is dropped by the dump (exclude_none); on 2026-07-28 the server-info
        # member is a declared field, dumped before any other.
        if type(meta) is not dict or None in meta.values() or not _plain_json(meta):
            return None
        if typed and _SERVER_INFO in meta and next(iter(meta)) != _SERVER_INFO:
            meta = {_SERVER_INFO: meta[_SERVER_INFO], **meta}
        wire["_meta"] = meta
    wire["content"] = blocks
    if "isError" in raw:
        if type(raw["isError"]) is not bool:
            return None
        wire["isError"] = raw["isError"]
    if typed:
        wire["resultType"] = "complete"
    if "structuredContent" in raw:
        structured = raw["structuredContent"]
        if type(structured) is not dict or not _plain_json(structured):
            return None
        wire["structuredContent"] = structured
    return wire


class WireResult:
    """An upstream tools/call result validated against the negotiated protocol version's
    result schema (`serialize_server_result`), kept in the wire form that gave, without the
    SDK's `CallToolResult` model: a second validation of the same content that most calls
    never use (the fast path answers with the wire form, the size cap measures it). `model()`
    builds it, validated, when something needs it: a policy's result redaction, the SDK's
    request path, an answer in another protocol version (gateway.pipeline decides, before
    the call's audit record, so a result the model refuses fails the call as before)."""

    __slots__ = ("_model", "_raw", "is_error", "structured_content", "wire_for")

    def __init__(self, raw: dict[str, Any], version: str, wire: dict[str, Any]) -> None:
        self._raw = raw
        self._model: UpstreamResult | None = None
        self.wire_for = {version: wire}
        self.is_error = wire.get("isError") is True
        self.structured_content = wire.get("structuredContent")

    def model(self) -> UpstreamResult:
        """The SDK model of this result (pydantic.ValidationError if it does not conform)."""
        if self._model is None:
            model = UpstreamResult.model_validate(self._raw, by_name=False)
            model.wire_for.update(self.wire_for)
            self._model = model
        return self._model


def as_model(result: CallToolResult | WireResult) -> CallToolResult:
    return result.model() if isinstance(result, WireResult) else result


class UpstreamResult(CallToolResult):
    """A CallToolResult as the upstream sent it, remembering its wire form per protocol
    version (what `serialize_server_result` made of the upstream's answer): the fast path
    answers a client of that version with it instead of dumping and re-validating the model.
    A copy (`model_copy`, as redaction makes one with changed content) has none, and setting
    a field drops it: the wire form describes this object's content only. (Nested content is
    never changed in place: gateway.redaction builds new blocks and copies the result.)"""

    _wire_for: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)

    @property
    def wire_for(self) -> dict[str, dict[str, Any]]:
        # Straight from pydantic's private-attribute dict: `self._wire_for` goes through
        # BaseModel.__getattr__, several times slower, and this is read on every call.
        return self.__pydantic_private__["_wire_for"]  # type: ignore[index]

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name != "_wire_for":
            self._wire_for = {}

    def __copy__(self) -> UpstreamResult:
        copied = super().__copy__()
        copied._wire_for = {}
        return copied

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> UpstreamResult:
        copied = super().__deepcopy__(memo)
        copied._wire_for = {}
        return copied


def _output_conforms(session: Any, name: str, result: CallToolResult | WireResult) -> bool:
    """True when the SDK's output-schema check (`validate_tool_result`) would certainly pass:
    the session's cached listing has the tool, and it declares no output schema or the
    structured content conforms to it (gateway.schema_check). False: run the SDK's check
    (it re-lists unknown tools, refuses missing or invalid structured content, and words the
    errors). The cache is the session's private `_tool_output_schemas`: an SDK without it
    always gets its own check."""
    schemas = getattr(session, "_tool_output_schemas", None)
    if not isinstance(schemas, dict) or name not in schemas:
        return False
    schema = schemas[name]
    if schema is None:
        return True
    structured = result.structured_content
    return structured is not None and schema_check.output_conforms(schema, structured)


def _observed() -> bool:
    """Whether the SDK's client span could record (a global tracer provider is set: the
    gateway never sets one, an operator's auto-instrumentation may) or a trace context would
    be injected (GATEWAY_TRACE_PROPAGATE_UPSTREAM)."""
    if tracing.propagates_upstream():
        return True
    # What `trace.get_tracer_provider()` returning a non-proxy provider means, without its
    # environment lookup on every call: a provider was set, or one is named in the
    # environment (read at import: the environment does not change under a running process).
    return (
        getattr(trace, "_TRACER_PROVIDER", None) is not None
        or _PROVIDER_FROM_ENV
        or (
            not hasattr(trace, "_TRACER_PROVIDER")
            and not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        )
    )


_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def _parse_json(body: bytes) -> Any:
    try:
        return pydantic_core.from_json(body)
    except ValueError as exc:
        raise MCPError(INVALID_REQUEST, "the server's response is not valid JSON") from exc


def _mcp_error(error: dict[str, Any]) -> MCPError:
    code = error.get("code")
    message = error.get("message")
    return MCPError(
        code if isinstance(code, int) else INTERNAL_ERROR,
        str(message) if message is not None else "error",
        error.get("data"),
    )


def _outcome(message: Any, request_id: int) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise MCPError(INVALID_REQUEST, "the server's response is not a JSON-RPC response")
    if isinstance(message.get("error"), dict):
        raise _mcp_error(message["error"])
    if message.get("id") != request_id or not isinstance(message.get("result"), dict):
        raise MCPError(INVALID_REQUEST, "the server's response is not a JSON-RPC response")
    return message["result"]


def http_client_for(config: Any, headers: Mapping[str, str], connect_timeout: float) -> Http1Client:
    """The HTTP client the lean path uses (gateway.http1): the server's static headers and the
    credential, and with the catalog's config (every approved server) its egress guard on every
    new connection (declared hosts, address ranges, connecting only to the checked addresses).
    Response sizes are capped by `LeanUpstream` while it reads."""
    catalog_config = config.catalog_config
    url = config.url or getattr(catalog_config, "url", "")
    if catalog_config is not None:
        return Http1Client(
            url,
            headers={**catalog_config.static_headers, **dict(headers)},
            egress_hosts=tuple(catalog_config.egress_hosts),
            connect_timeout=connect_timeout,
        )
    return Http1Client(url, headers=dict(headers), connect_timeout=connect_timeout)


@contextlib.asynccontextmanager
async def open_lean(
    config: Any, headers: Mapping[str, str], client: Client, connect_timeout: float
) -> AsyncIterator[LeanUpstream | None]:
    """A LeanUpstream beside the connected SDK `client`, or None when the lean path does not
    apply (stdio, turned off, an era it does not know, a failed handshake): the SDK client
    then serves every call."""
    version = client.protocol_version
    if (
        config.transport != "http"
        or not callable(getattr(client.session, "_stamp", None))  # an SDK without it
        or not lean_enabled()
        or version not in (*MODERN_PROTOCOL_VERSIONS, *HANDSHAKE_PROTOCOL_VERSIONS)
    ):
        yield None
        return
    url = config.url or getattr(config.catalog_config, "url", "")
    http = http_client_for(config, headers, connect_timeout)
    async with http:
        lean: LeanUpstream | None = LeanUpstream(url, http, client, version)
        try:
            with anyio.fail_after(connect_timeout):
                await lean.initialize()  # type: ignore[union-attr]
        except Exception as exc:
            logger.warning(
                "lean upstream path off for %s (%s); using the SDK client",
                config.label,
                type(exc).__name__,
            )
            lean = None
        try:
            yield lean
        finally:
            if lean is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                    await lean.terminate()
