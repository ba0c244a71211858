"""The MCP endpoint: `/mcp/<org>/` (every tool the caller may use) and `/mcp/<org>/<toolset>/`
(one tool group), served by the official `mcp` SDK's low-level `Server` in stateless mode.

Stateless means no session state lives in one process: any replica answers any request, for
both protocol eras the SDK speaks (2025-11-25 with `initialize`, 2026-07-28 with
`MCP-Protocol-Version` / `Mcp-Method` headers on every POST).

In front of the SDK, `GatewayEndpoint` does what must happen before any JSON-RPC is read:
route the path, check Host (421) and Origin (403), authenticate (401 with a challenge), load
the organization's compiled policy, and attach a request id. It also audits requests the SDK
refuses (malformed JSON, batches, unknown methods, bad headers, oversized bodies) for an
authenticated caller, since those never reach the pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from mcp.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.types import Message, Receive, Scope, Send

from audit.context import RequestContext, new_request_id, reset_context, set_context
from gateway import fastpath, pipeline, tracing
from gateway.audit_writer import audit_writer
from gateway.auth import AuthFailure, authenticate
from gateway.conf import gateway_settings
from gateway.directory import directory
from gateway.pool import pool

logger = logging.getLogger(__name__)

_PATH_RE = re.compile(
    r"^/mcp/(?P<org>[a-z0-9][a-z0-9-]{0,62})(?:/(?P<toolset>[a-z0-9][a-z0-9_-]{0,99}))?/?$"
)
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
SERVER_NAME = "mcp-governance-gateway"


def _json_response(
    status: int, message: str, *, code: int = -32600, headers: dict[str, str] | None = None
) -> Callable[[Scope, Receive, Send], Any]:
    body = json.dumps(
        {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
    ).encode()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    return app


def build_server() -> Server[Any]:
    return Server(
        SERVER_NAME,
        version="1.0.0",
        instructions=(
            "Tools of your organization's approved MCP servers, as its policies allow. "
            "Tool names are <server>.<tool>."
        ),
        on_list_tools=pipeline.list_tools,
        on_call_tool=pipeline.call_tool,
        get_tool_input_schema=pipeline.input_schema_for,
    )


class GatewayEndpoint:
    def __init__(self, server: Server[Any]) -> None:
        self.server = server
        self.manager: StreamableHTTPSessionManager | None = None
        settings = gateway_settings()
        self.security_settings = TransportSecuritySettings(
            enable_dns_rebinding_protection=settings.check_hosts,
            allowed_hosts=settings.allowed_hosts,
            allowed_origins=settings.allowed_origins,
        )
        self._security = TransportSecurityMiddleware(self.security_settings)
        # gateway.fastpath: on unless GATEWAY_FAST_PATH=false; calls it served are counted.
        self.fast_path = fastpath.usable(server)
        self.fast_served = 0

    def new_manager(self) -> StreamableHTTPSessionManager:
        settings = gateway_settings()
        # One manager per lifespan: the SDK allows run() once per instance.
        self.manager = StreamableHTTPSessionManager(
            app=self.server,
            stateless=True,
            json_response=settings.json_response,
            security_settings=self.security_settings,
            max_request_body_size=settings.max_body_bytes,
        )
        return self.manager

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        manager = self.new_manager()
        try:
            async with tracing.lifespan(), pool.run(), manager.run():
                yield
        finally:
            from gateway.db import shutdown

            await asyncio.to_thread(shutdown)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        match = _PATH_RE.match(scope.get("path", ""))
        if match is None:
            await _json_response(
                404,
                "Not found: the MCP endpoint is /mcp/<organization>/ or /mcp/<organization>/<toolset>/",
            )(scope, receive, send)
            return
        headers = fastpath.RequestHeaders(scope=scope)
        if self.security_settings.enable_dns_rebinding_protection:
            if not self._security._validate_host(headers.get("host")):
                await _json_response(421, "Invalid Host header")(scope, receive, send)
                return
            if not self._security._validate_origin(headers.get("origin")):
                await _json_response(403, "Invalid Origin header")(scope, receive, send)
                return
        incoming_id = headers.get("x-request-id", "")
        request_id = incoming_id if _REQUEST_ID_RE.match(incoming_id) else new_request_id()
        client = scope.get("client")
        source_ip = client[0] if client else None
        token = set_context(RequestContext(request_id=request_id, source_ip=source_ip))
        try:
            await self._serve(scope, receive, send, match, headers, request_id, source_ip)
        finally:
            reset_context(token)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        match: re.Match[str],
        headers: fastpath.RequestHeaders,
        request_id: str,
        source_ip: str | None,
    ) -> None:
        id_header = (b"x-request-id", request_id.encode())
        org_slug, toolset = match["org"], match["toolset"]
        try:
            principal = await authenticate(headers.get("authorization"), org_slug=org_slug)
        except AuthFailure as exc:
            await _json_response(
                401,
                f"Unauthorized: {exc.description}",
                headers={"WWW-Authenticate": exc.challenge(), "X-Request-ID": request_id},
            )(scope, receive, send)
            return
        except Exception:
            logger.exception("authentication failed with an internal error")
            await _json_response(
                503,
                "The gateway cannot check credentials right now; retry shortly.",
                code=-32050,
                headers={"Retry-After": "5", "X-Request-ID": request_id},
            )(scope, receive, send)
            return
        try:
            view = await directory.org_view(principal.org_id)
        except Exception:
            logger.exception("loading the organization's policy failed")
            await _json_response(
                503,
                "The gateway cannot load your organization's policy right now; nothing was "
                "forwarded. Retry shortly.",
                code=-32050,
                headers={"Retry-After": "5", "X-Request-ID": request_id},
            )(scope, receive, send)
            return
        if toolset is not None and toolset not in view.compiled.toolsets:
            await _json_response(
                404,
                f"No toolset '{toolset}' in this organization: use /mcp/{org_slug}/ for every "
                "tool you may use.",
                headers={"X-Request-ID": request_id},
            )(scope, receive, send)
            return
        req = pipeline.GatewayRequest(
            principal=principal,
            view=view,
            toolset=toolset,
            request_id=request_id,
            source_ip=source_ip,
        )
        scope.setdefault("state", {})[pipeline.STATE_KEY] = req
        ctx_token = pipeline.current_request.set(req)
        refusal = _RefusalWatch(req, send, id_header)
        try:
            manager = self.manager
            if manager is None:
                raise RuntimeError("The MCP endpoint's lifespan did not run.")
            settings = gateway_settings()
            if self.fast_path and fastpath.eligible(
                scope,
                headers,
                json_response=settings.json_response,
                max_body=settings.max_body_bytes,
            ):
                body, consumed = await fastpath.read_body(receive, settings.max_body_bytes)
                answer = None
                if body is not None:
                    answer = await fastpath.serve(self.server, req, scope, headers, body)
                if answer is not None:
                    self.fast_served += 1
                    status, payload = answer
                    # Errors go through the refusal watch (audited unless the pipeline did).
                    if status == 200 and req.audited:
                        await _send_json(send, status, payload, id_header)
                    else:
                        await _send_json(refusal.send, status, payload)
                    return
                receive = fastpath.replay(consumed, receive)  # the SDK reads it again
            await manager.handle_request(scope, receive, refusal.send)
            await refusal.flush()
        finally:
            pipeline.current_request.reset(ctx_token)


async def _send_json(send: Send, status: int, body: bytes, *extra: tuple[bytes, bytes]) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _RefusalWatch:
    """Passes the response through, adding X-Request-ID; when the SDK refused the request
    (HTTP 4xx, or a JSON-RPC error body) and the pipeline did not audit it, writes an
    `mcp.request_refused` audit record before the response leaves."""

    _MAX_INSPECT = 64 * 1024

    def __init__(
        self, req: pipeline.GatewayRequest, send: Send, id_header: tuple[bytes, bytes]
    ) -> None:
        self.req = req
        self._send = send
        self._id_header = id_header
        self._start: Message | None = None
        self._json = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = [*message.get("headers", []), self._id_header]
            content_type = next(
                (v for k, v in message["headers"] if k.lower() == b"content-type"), b""
            )
            self._json = content_type.startswith(b"application/json")
            if message["status"] >= 400 or self._json:
                self._start = message  # hold it until the body says whether it is a refusal
                return
            await self._send(message)
            return
        if message["type"] == "http.response.body" and self._start is not None:
            start, self._start = self._start, None
            if not self.req.audited:
                await self._maybe_audit(
                    start["status"], message.get("body", b""), message.get("more_body", False)
                )
            await self._send(start)
        await self._send(message)

    async def flush(self) -> None:
        if self._start is not None:
            start, self._start = self._start, None
            await self._send(start)

    async def _maybe_audit(self, status: int, body: bytes, more: bool) -> None:
        error: dict[str, Any] | None = None
        if self._json and not more and len(body) <= self._MAX_INSPECT and b'"error"' in body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
                error = parsed["error"]
        if error is None and status < 400:
            return
        details = {"http_status": status}
        if error is not None:
            details["code"] = error.get("code")
            details["message"] = str(error.get("message", ""))[:500]
        else:
            details["message"] = body[:200].decode("utf-8", "replace")
        if self.req.toolset:
            details["toolset"] = self.req.toolset
        principal = self.req.principal
        try:
            from audit.services import build_event

            await audit_writer.write(
                build_event(
                    org=principal.organization,
                    action="mcp.request_refused",
                    agent=principal.agent,
                    on_behalf_of=principal.acting_for,
                    outcome="denied",
                    details=details,
                    decision="deny",
                    error_class="validation",
                )
            )
        except Exception:
            logger.exception("could not audit a refused MCP request")


_endpoint: GatewayEndpoint | None = None


def build_mcp_app() -> tuple[
    GatewayEndpoint, Callable[[], contextlib.AbstractAsyncContextManager[None]]
]:
    """(ASGI app for /mcp/..., lifespan factory) for config/asgi.py's router."""
    global _endpoint
    if not gateway_settings().log_upstream_requests:
        # One INFO line per upstream HTTP request (httpx2) costs CPU on every call and repeats
        # what the audit record holds; warnings and errors still get through.
        for name in ("httpx2", "httpcore2"):
            upstream_logger = logging.getLogger(name)
            if upstream_logger.getEffectiveLevel() < logging.WARNING:
                upstream_logger.setLevel(logging.WARNING)
    _endpoint = GatewayEndpoint(build_server())
    return _endpoint, _endpoint.lifespan
