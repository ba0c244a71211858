"""The hot path: a well-formed `tools/call` (either protocol era) answered as JSON, without
the SDK's per-request server machinery.

For every request the SDK builds a Starlette request and, per era, a connection, a dispatch
context (the 2025 entry: a whole transport, memory streams and a server task), a server session
and a request context, runs the middleware chain and sends the result through several pydantic
models: more of the gateway's CPU per call than the pipeline itself. This module answers the one
request agents send most, and only when it is plainly valid, by calling the SDK's own checks in
the SDK's order:

    both eras: Content-Type and Accept (as TransportSecurityMiddleware and check_accept_headers),
    the body limit, JSON (each era's parser), the JSON-RPC envelope, the params
    (`validate_client_request` for the request's protocol version);
    2026-07-28: duplicated routing headers, the modern ladder (`classify_inbound_request`:
    `_meta` envelope, MCP-Protocol-Version / Mcp-Method / Mcp-Name consistency, supported
    version), `Mcp-Param-*` headers against the caller's schema (`validate_mcp_param_headers`);
    2025 era: a handshake version in MCP-Protocol-Version, no 2026 envelope in `_meta`;

then `pipeline.execute_call`, then the result as the SDK shapes it for that era
(`serialize_server_result`; on 2026-07-28 `resultType` and the `serverInfo` stamp) and written
as that era's entry writes it, and errors as it maps them (`modern_error_data`; on 2026-07-28
the table-mapped HTTP status, on the 2025 era HTTP 200).

Anything else, and any request one of those checks would refuse, is not answered here:
`serve` returns None before anything ran and gateway.asgi hands the request (body replayed)
to the SDK, which answers it exactly as it always did (error codes, refusal audit). So the
SDK stays the one place that decides what a bad request gets; this path only skips work for
good ones. tests/gateway/test_fastpath.py sends the same requests both ways and compares the
answers and the audit records.

Not taken (the SDK serves these): `initialize`, `tools/list` and every other method, a POST
without MCP-Protocol-Version, SSE response mode (`GATEWAY_JSON_RESPONSE=false`), tracing on
(the span needs the SDK request context), `GATEWAY_FAST_PATH=false`. One deliberate difference:
an unexpected exception (a bug) becomes a generic INTERNAL_ERROR on both eras, where the SDK's
2025 entry would send the exception's text as the message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import pydantic_core
from mcp.server import Server
from mcp.server.runner import modern_error_data
from mcp.server.streamable_http import check_accept_headers
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_PARAM_HEADER_PREFIX,
    X_MCP_HEADER_KEY,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
    validate_mcp_param_headers,
)
from mcp_types import (
    INTERNAL_ERROR,
    PROTOCOL_VERSION_META_KEY,
    SERVER_INFO_META_KEY,
    JSONRPCError,
    JSONRPCResponse,
)
from mcp_types import methods as mcp_methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import Message, Receive, Scope

from config.env import env_bool
from gateway import pipeline, schema_check, tracing
from gateway.lean import UpstreamResult, WireResult

logger = logging.getLogger(__name__)

_MODERN = frozenset(MODERN_PROTOCOL_VERSIONS)
_HANDSHAKE = frozenset(HANDSHAKE_PROTOCOL_VERSIONS)
_PARAM_PREFIX = MCP_PARAM_HEADER_PREFIX.lower()
_ENVELOPE_KEYS = frozenset({"jsonrpc", "id", "method", "params"})


class RequestHeaders(Headers):
    """Starlette's request Headers, with lookups (`get`, `[]`, `in`) answered from a dict
    built in one pass: the endpoint and the fast path look up a dozen headers per request,
    and each Starlette lookup is a scan of the raw list through `Mapping.get`. Same answers:
    ASGI servers give lower-case names, and a repeated header answers with its first value.
    Iteration, `items()`, `getlist` and `raw` stay Starlette's (repeats included, which
    the SDK's duplicate-header checks rely on)."""

    def __init__(self, *, scope: Scope) -> None:
        super().__init__(scope=scope)
        first: dict[str, str] = {}
        for key, value in self.raw:
            name = key.decode("latin-1").lower()
            if name not in first:
                first[name] = value.decode("latin-1")
        self.first = first  # name -> first value; what `dict(Headers(scope=scope))` gives

    def __getitem__(self, key: str) -> str:
        return self.first[key.lower()]

    def __contains__(self, key: Any) -> bool:
        return isinstance(key, str) and key.lower() in self.first

    def get(self, key: str, default: Any = None) -> Any:
        return self.first.get(key.lower(), default)


def enabled() -> bool:
    return env_bool("GATEWAY_FAST_PATH", default=True)


def eligible(scope: Scope, headers: RequestHeaders, *, json_response: bool, max_body: int) -> bool:
    """Whether to try the fast path (cheap header checks only; `serve` checks the rest)."""
    if not json_response or scope.get("method") != "POST" or tracing.enabled():
        return False
    version = headers.get("mcp-protocol-version")
    if version in _MODERN:
        if headers.get("mcp-method") != "tools/call":
            return False
    elif version not in _HANDSHAKE:  # the 2025 era names the method in the body only
        return False
    length = headers.get("content-length")
    return length is not None and length.isdigit() and int(length) <= max_body


async def read_body(receive: Receive, max_body: int) -> tuple[bytes | None, list[Message]]:
    """(the body, or None when it cannot be served here; the messages read, for replay)."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return None, messages  # a disconnect: the SDK path sees it too
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_body:
            return None, messages  # the SDK answers 413
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), messages


def replay(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that gives back `messages` first (what `read_body` consumed)."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


async def serve(
    server: Server[Any],
    req: pipeline.GatewayRequest,
    scope: Scope,
    headers: RequestHeaders,
    body: bytes,
) -> tuple[int, bytes] | None:
    """(HTTP status, JSON body) for a plainly valid tools/call, or None (not handled: nothing
    ran, the SDK must answer it)."""
    if not headers.get("content-type", "").lower().startswith("application/json"):
        return None
    if not _accepts_json(scope, headers.get("accept", "")):
        return None
    header_version = headers.get("mcp-protocol-version", "")
    modern = header_version in _MODERN
    try:
        # Each era's SDK entry parses with its own parser; so does this path.
        decoded = json.loads(body) if modern else pydantic_core.from_json(body)
    except (ValueError, RecursionError):
        return None
    # A subset of what JSONRPCRequest accepts (strict types, no extra members).
    if (
        not isinstance(decoded, dict)
        or decoded.keys() - _ENVELOPE_KEYS
        or decoded.get("jsonrpc") != "2.0"
        or decoded.get("method") != "tools/call"
        or type(request_id := decoded.get("id")) not in (int, str)
        or not isinstance(decoded.get("params"), dict)
    ):
        return None
    params: dict[str, Any] = decoded["params"]
    if modern:
        if find_duplicated_routing_header(_header_items(scope)) is not None:
            return None
        verdict = classify_inbound_request(decoded, headers=dict(headers.first))
        if isinstance(verdict, InboundLadderRejection):
            return None
        version = verdict.protocol_version
    else:
        meta = params.get("_meta")
        if isinstance(meta, Mapping) and PROTOCOL_VERSION_META_KEY in meta:
            return None  # a 2026 envelope on the handshake era: the SDK refuses it
        # The stateless 2025 entry serves the version the header names.
        version = header_version
    try:
        mcp_methods.validate_client_request("tools/call", version, params)
    except (ValidationError, KeyError):
        return None
    name = params.get("name")
    arguments = params.get("arguments")
    if not isinstance(name, str) or not (arguments is None or isinstance(arguments, Mapping)):
        return None
    if modern and _param_headers_refused(name, arguments or {}, headers):
        return None

    try:
        result = await pipeline.execute_call(
            req, name, dict(arguments or {}), version, wire_ok=True
        )
        shaped = _shape(server, version, result, modern=modern)
    except Exception as exc:
        # MCPError and ValidationError as the SDK maps them; anything else (a bug) is a generic
        # INTERNAL_ERROR, logged (the 2025 entry would put the exception text on the wire).
        error = modern_error_data(exc)
        if modern:
            payload = JSONRPCError(jsonrpc="2.0", id=request_id, error=error).model_dump(
                mode="json", by_alias=True, exclude_none=True
            )
            status = ERROR_CODE_HTTP_STATUS.get(error.code, 200)
            return status, json.dumps(payload, separators=(",", ":")).encode()
        # The 2025 entry answers JSON-RPC errors with HTTP 200.
        reply = JSONRPCError(jsonrpc="2.0", id=request_id, error=error)
        return 200, reply.model_dump_json(by_alias=True, exclude_unset=True).encode()
    if modern:
        # What JSONRPCResponse(...).model_dump(exclude_none=True) gives: `exclude_none` does
        # not reach into the result dict, which `_shape` made JSON-ready.
        envelope = {"jsonrpc": "2.0", "id": request_id, "result": shaped}
        return 200, json.dumps(envelope, separators=(",", ":")).encode()
    # As the 2025 transport writes it (pydantic's JSON, exclude_unset).
    response = JSONRPCResponse(jsonrpc="2.0", id=request_id, result=shaped)
    return 200, response.model_dump_json(by_alias=True, exclude_unset=True).encode()


_accept_verdicts: dict[str, bool] = {}


def _accepts_json(scope: Scope, accept: str) -> bool:
    """The SDK's own Accept rule (`check_accept_headers`), remembered per Accept value:
    clients send the same one on every request."""
    verdict = _accept_verdicts.get(accept)
    if verdict is None:
        verdict, _ = check_accept_headers(Request(scope))
        if len(_accept_verdicts) < 256:
            _accept_verdicts[accept] = verdict
    return verdict


def _header_items(scope: Scope) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])]


def _param_headers_refused(
    name: str, arguments: Mapping[str, Any], headers: RequestHeaders
) -> bool:
    if not arguments and not any(key.startswith(_PARAM_PREFIX) for key in headers):
        return False
    schema = pipeline.input_schema_for(name)
    if schema is None or not _declares_param_headers(schema):
        return False
    return validate_mcp_param_headers(schema, arguments, headers) is not None


_annotated: schema_check.SchemaCache = {}


def _declares_param_headers(schema: Mapping[str, Any]) -> bool:
    """Whether `x-mcp-header` appears anywhere in the tool's input schema. Without it,
    `validate_mcp_param_headers` has no annotated property to compare and accepts whatever the
    headers say (its schema walks then cost CPU on every call for nothing). Remembered per
    schema object."""
    return schema_check.per_schema(_annotated, schema, _mentions_param_headers)


def _mentions_param_headers(schema: Mapping[str, Any]) -> bool:
    try:
        return f'"{X_MCP_HEADER_KEY}"' in json.dumps(schema)
    except (TypeError, ValueError):
        return True  # not plain JSON: let the SDK look


def _shape(server: Server[Any], version: str, result: Any, *, modern: bool) -> dict[str, Any]:
    """The result's wire form, as the SDK runner's `_serialize` makes it for tools/call."""
    wire = result.wire_for.get(version) if isinstance(result, UpstreamResult | WireResult) else None
    if wire is not None:
        # The upstream's answer, already validated and shaped for this very version (what the
        # lines below would make of it again); a copy, as the stamp below adds to it.
        dumped = dict(wire)
    else:
        dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        try:
            dumped = mcp_methods.serialize_server_result("tools/call", version, dumped)
        except ValidationError:
            # As the SDK runner: a server bug, not the client's; details stay in the log.
            logger.exception("tools/call produced an invalid result")
            raise MCPError(INTERNAL_ERROR, "Handler returned an invalid result") from None
    if not modern:
        return dumped  # handshake-era results carry neither resultType nor the serverInfo stamp
    if dumped.get("resultType") is None:
        dumped["resultType"] = "complete"
    meta = dumped.get("_meta")
    if meta is None:
        dumped["_meta"] = {SERVER_INFO_META_KEY: server.server_info_stamp}
    elif isinstance(meta, dict) and meta.get(SERVER_INFO_META_KEY) is None:
        dumped["_meta"] = {**meta, SERVER_INFO_META_KEY: server.server_info_stamp}
    return dumped


def usable(server: Server[Any]) -> bool:
    """The fast path mirrors the SDK runner for a server without tools/call cache hints (the
    gateway sets none); with them, every call takes the SDK path."""
    return enabled() and server.cache_hints.get("tools/call") is None
