"""The gateway's call pipeline: what happens to every MCP request an agent sends.

Read top to bottom, in the order the steps run (DESIGN.md, "The gateway call pipeline"):

    1 authenticate   done by gateway.asgi before the SDK sees the request: the request's
                     `GatewayRequest` (principal, organization view, toolset) is in scope state
    2 tools/list     `list_tools`: the compiled policy's visible tools for this principal and
                     toolset (approved, pinned, allowed; overrides applied), sorted by name;
                     no upstream is asked
    3 authorize      `decide()`; then the arguments are validated against the tool's input schema
                     (the SDK no longer does); pinned arguments are merged in by `decide()`
    4 limit          rate limits and quotas of the policies (gateway.ratelimit)
    5 credential     the acting-for user's connection, or the server's static secret; the agent's
                     own key never goes upstream
    6 call upstream  pooled client, per-server timeout, one retry for connection failures of
                     read-only/idempotent tools, circuit breaker, drift check
    7 filter         size cap, policy redaction; the upstream's isError is passed through
    8 audit          one `tool.call` record committed before the result is returned; if it
                     cannot be written the call fails (group commit: gateway.audit_writer)

Errors are mapped once, here: `GatewayProtocolError` -> JSON-RPC error (`MCPError`),
`ToolFailure` -> `CallToolResult(isError=true)`. Every tools/call, allowed or not, is audited.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic_core
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
    ToolAnnotations,
)
from pydantic import ValidationError

from gateway import errors, schema_check, tracing
from gateway.audit_writer import audit_services, audit_writer
from gateway.auth import GatewayPrincipal
from gateway.breaker import breakers
from gateway.conf import gateway_settings
from gateway.db import run_db
from gateway.directory import OrgView, ServerEntry
from gateway.errors import GatewayProtocolError, ToolFailure, UpstreamTimeout, UpstreamUnavailable
from gateway.lean import UpstreamResult, WireResult
from gateway.pool import pool
from gateway.ratelimit import check_and_consume
from gateway.redaction import mask_paths, redact_result
from policies.engine import Decision, VisibleTool

logger = logging.getLogger(__name__)

STATE_KEY = "gateway"
_MAX_ARGUMENT_CHARS_IN_AUDIT = 1000


@dataclass
class GatewayRequest:
    """Everything about one authenticated HTTP request, put in the ASGI scope by gateway.asgi."""

    principal: GatewayPrincipal
    view: OrgView
    toolset: str | None
    request_id: str
    source_ip: str | None
    audited: bool = False


# The current request for `input_schema_for` (the SDK calls it with a tool name only).
current_request: contextvars.ContextVar[GatewayRequest | None] = contextvars.ContextVar(
    "gateway_request", default=None
)


def gateway_request(ctx: ServerRequestContext[Any]) -> GatewayRequest:
    request = ctx.request
    state = getattr(request, "scope", {}).get("state") or {}
    found = state.get(STATE_KEY)
    if not isinstance(found, GatewayRequest):
        # Only reachable if the endpoint were mounted without gateway.asgi in front.
        raise MCPError(errors.GATEWAY_UNAVAILABLE, "The request was not authenticated.")
    return found


# --------------------------------------------------------------------------- 2 tools/list


_tool_cache: dict[tuple[int, int, str], Tool] = {}


def _as_mcp_tool(visible: VisibleTool, view: OrgView) -> Tool:
    key = (view.org_id, view.version, visible.name)
    tool = _tool_cache.get(key)
    # Entries of one (org, version) are identical for every principal unless pins differ, so
    # the cache is keyed by the schema object too (the engine shares it between principals).
    if tool is None or tool.input_schema is not visible.input_schema:
        if len(_tool_cache) > 50_000:
            _tool_cache.clear()
        annotations = (
            ToolAnnotations.model_validate(dict(visible.annotations))
            if visible.annotations
            else None
        )
        tool = Tool(
            name=visible.name,
            title=visible.title or None,
            description=visible.description or None,
            input_schema=visible.input_schema,  # type: ignore[arg-type]
            annotations=annotations,
        )
        _tool_cache[key] = tool
    return tool


@tracing.traced_request("tools/list", gateway_request)
async def list_tools(
    ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
) -> ListToolsResult:
    req = gateway_request(ctx)
    visible = req.view.visible(req.principal.policy_principal, req.toolset)
    return ListToolsResult(tools=[_as_mcp_tool(v, req.view) for v in visible.values()])


def input_schema_for(name: str) -> Mapping[str, Any] | None:
    """The input schema the calling principal was shown for `name` (the SDK's Mcp-Param header
    validation on 2026-era requests), without re-running tools/list."""
    req = current_request.get()
    if req is None:
        return None
    visible = req.view.visible(req.principal.policy_principal, req.toolset).get(name)
    return visible.input_schema if visible is not None else None


# --------------------------------------------------------------------------- tools/call


@dataclass
class CallRecord:
    """What the audit record of one call says; filled in as the pipeline goes."""

    exposed_name: str
    arguments: Any
    started: float = field(default_factory=time.perf_counter)
    decision: Decision | None = None
    server: ServerEntry | None = None
    outcome: str = "success"
    error_class: str = ""
    message: str = ""
    upstream_ms: float | None = None
    result_is_error: bool = False
    # The user's connection whose token went upstream (audited by id, never the token).
    connection_id: int | None = None


@tracing.traced_request("tools/call", gateway_request)
async def call_tool(
    ctx: ServerRequestContext[Any], params: CallToolRequestParams
) -> CallToolResult:
    """The SDK's tools/call handler (gateway.fastpath calls `execute_call` directly)."""
    result = await execute_call(
        gateway_request(ctx), params.name, params.arguments or {}, ctx.protocol_version
    )
    assert isinstance(result, CallToolResult)  # no wire-only result without wire_ok
    return result


async def execute_call(
    req: GatewayRequest,
    name: str,
    arguments: dict[str, Any],
    protocol_version: str | None,
    *,
    wire_ok: bool = False,
) -> CallToolResult | WireResult:
    """Steps 3-8 for one tools/call: the result, or MCPError (a JSON-RPC error) once the call's
    audit record is committed. `wire_ok` (the fast path): an upstream result may come back as
    its validated wire form for `protocol_version` (gateway.lean.WireResult) instead of the
    SDK model, when nothing needs the model."""
    record = CallRecord(exposed_name=name, arguments=arguments)
    protocol_error: GatewayProtocolError | None = None
    wire_version = protocol_version if wire_ok else None
    try:
        result = await _call(req, name, arguments, record, wire_version)
    except GatewayProtocolError as exc:
        protocol_error = exc
        record.outcome = "denied" if exc.error_class in ("policy", "rate_limit") else "failure"
        if exc.error_class == "validation":
            record.outcome = "denied"
        record.error_class, record.message = exc.error_class, exc.message
        result = None
    except ToolFailure as exc:
        record.outcome = "denied" if exc.error_class == "validation" else "failure"
        record.error_class, record.message = exc.error_class, exc.message
        result = CallToolResult(content=[TextContent(type="text", text=exc.message)], is_error=True)
    with tracing.step("audit"):
        await _audit(req, record, protocol_version)
    if protocol_error is not None:
        raise MCPError(protocol_error.code, protocol_error.message, protocol_error.data)
    assert result is not None
    return result


async def _call(
    req: GatewayRequest,
    name: str,
    arguments: dict[str, Any],
    record: CallRecord,
    wire_version: str | None = None,
) -> CallToolResult | WireResult:
    principal = req.principal.policy_principal
    view = req.view

    # 3 authorize
    with tracing.step("authorize"):
        decision = view.compiled.decide(principal, name, arguments, toolset=req.toolset)
        record.decision = decision
        if not decision.allowed:
            _refuse(name, decision)
        visible = view.visible(principal, req.toolset).get(name)
        if visible is None:  # allowed but not listed: treat as unknown rather than guess
            raise GatewayProtocolError(
                errors.UNKNOWN_TOOL, f"Unknown tool: {name}", error_class="validation"
            )
        pinned = {pin.argument for pin in decision.pins}
        _validate_arguments(visible, {k: v for k, v in arguments.items() if k not in pinned})
    identity = decision.tool
    assert identity is not None

    # 4 limit
    with tracing.step("limit"):
        limited = await check_and_consume(decision.limits)
    if limited is not None:
        raise GatewayProtocolError(
            errors.RATE_LIMITED,
            limited.message(),
            error_class="rate_limit",
            data={
                "limit": limited.limit.rule,
                "window": limited.limit.window,
                "maxCalls": limited.limit.max_calls,
                "retryAfterSeconds": max(1, round(limited.retry_after)),
            },
        )

    # 5 credential
    server = view.servers.get(identity.server)
    record.server = server
    if server is None:
        raise ToolFailure(
            f"The server '{identity.server}' has no usable connection settings in the catalog; "
            "ask an administrator to check it.",
            error_class="upstream",
        )
    with tracing.step("credential", auth_mode=server.auth_mode):
        headers = await _credential_headers(req.principal, server, record)

    # 6 call upstream
    breaker_key = server.upstream.key
    await breakers.before_call(breaker_key, server.slug)
    annotations = visible.annotations or {}
    retry = bool(annotations.get("readOnlyHint") or annotations.get("idempotentHint"))
    upstream_started = time.perf_counter()
    try:
        with tracing.step("upstream", server=server.slug, tool=identity.name):
            result = await pool.call_tool(
                server.upstream,
                headers,
                identity.name,
                decision.effective_arguments,
                retry_connection_failure=retry,
                expected_hash=identity.definition_hash,
            )
    except (UpstreamUnavailable, UpstreamTimeout):
        record.upstream_ms = (time.perf_counter() - upstream_started) * 1000
        await breakers.record_failure(breaker_key)
        raise
    except errors.ToolDrift as exc:
        record.upstream_ms = (time.perf_counter() - upstream_started) * 1000
        await _report_drift(server, identity.name, exc)
        raise
    record.upstream_ms = (time.perf_counter() - upstream_started) * 1000
    await breakers.record_success(breaker_key)

    # 7 filter
    with tracing.step("filter"):
        if isinstance(result, WireResult) and (
            decision.redaction.results or wire_version not in result.wire_for
        ):
            result = _model_of(result, server.label)
        if decision.redaction.results:
            result = redact_result(result, decision.redaction.results)  # type: ignore[arg-type]
        size = _result_size(result)
    if size > gateway_settings().max_result_bytes:
        raise ToolFailure(
            f"The result of '{name}' is {size} bytes, over the gateway's limit of "
            f"{gateway_settings().max_result_bytes}; ask for less (filters, pagination).",
            error_class="upstream",
        )
    if result.is_error:
        record.outcome = "failure"
        record.error_class = "upstream"
        record.result_is_error = True
    return result


def _model_of(result: WireResult, label: str) -> CallToolResult:
    """The SDK model of an upstream result, built here (before the audit record) so a result
    the model refuses fails the call as the lean path's own validation used to."""
    try:
        return result.model()
    except ValidationError as exc:
        raise ToolFailure(
            f"The upstream server '{label}' answered with something the gateway cannot read "
            f"({type(exc).__name__}).",
            error_class="upstream",
        ) from exc


def _result_size(result: CallToolResult | WireResult) -> int:
    """Bytes of the result's JSON. An upstream result nothing changed carries its validated
    wire form (gateway.lean): measured from that rather than dumping the model, the same JSON
    give or take optional members the protocol version does not know."""
    wire_for = result.wire_for if isinstance(result, UpstreamResult | WireResult) else None
    if wire_for:
        return len(pydantic_core.to_json(next(iter(wire_for.values()))))
    return len(result.model_dump_json(by_alias=True, exclude_none=True))


def _refuse(name: str, decision: Decision) -> None:
    reasons = list(decision.reasons)
    if decision.tool is None:
        raise GatewayProtocolError(
            errors.UNKNOWN_TOOL, f"Unknown tool: {name}", error_class="validation"
        )
    if decision.error_class == "validation":
        raise ToolFailure(
            "The arguments were refused by policy: " + "; ".join(reasons), error_class="validation"
        )
    raise GatewayProtocolError(
        errors.POLICY_DENIED,
        f"Denied by policy: {'; '.join(reasons) or 'no policy allows this tool'}",
        error_class="policy",
        data={"reasons": reasons},
    )


_validators: schema_check.SchemaCache = {}


def _validator(schema: Mapping[str, Any]) -> Draft202012Validator | None:
    return schema_check.per_schema(_validators, schema, _new_validator)


def _new_validator(schema: Mapping[str, Any]) -> Draft202012Validator | None:
    try:
        Draft202012Validator.check_schema(schema)
        return Draft202012Validator(schema)
    except SchemaError:
        return None  # the catalog refuses such schemas; never crash on one


def _validate_arguments(visible: VisibleTool, arguments: Mapping[str, Any]) -> None:
    validator = _validator(visible.input_schema)
    if validator is None:
        raise ToolFailure(
            f"The input schema of '{visible.name}' is invalid; the call was not sent.",
            error_class="validation",
        )
    arguments = dict(arguments)
    if schema_check.arguments_conform(visible.input_schema, arguments):
        return  # certainly valid (jsonschema-rs); anything else is python-jsonschema's call
    problems = []
    for error in validator.iter_errors(arguments):
        where = "/".join(str(p) for p in error.absolute_path) or "(arguments)"
        message = error.message if len(error.message) <= 200 else error.message[:200] + "…"
        problems.append(f"{where}: {message}")
        if len(problems) >= 5:
            break
    if problems:
        raise ToolFailure(
            f"Invalid arguments for '{visible.name}': " + "; ".join(problems),
            error_class="validation",
        )


# --------------------------------------------------------------------------- 5 credential

_token_cache: dict[tuple[int, Any], tuple[float, str, int]] = {}
_TOKEN_CACHE_SECONDS = 10.0


async def _credential_headers(
    principal: GatewayPrincipal, server: ServerEntry, record: CallRecord | None = None
) -> dict[str, str]:
    """Headers that authenticate the gateway to the upstream for this principal.

    Never the agent's own key: static headers come from the catalog, OAuth tokens from the
    acting-for user's connection (cached in memory for 10 s)."""
    if server.auth_mode == "static":
        return dict(server.static_headers)
    if server.auth_mode != "oauth":
        return {}
    if principal.acting_for is None:
        raise ToolFailure(
            f"The server '{server.slug}' acts with each user's own account, and this agent acts "
            "for no user. Ask an administrator to set the agent's 'acting for' user.",
            error_class="credential",
        )
    key = (principal.acting_for_id or 0, server.provider.pk if server.provider else None)
    now = time.monotonic()
    cached = _token_cache.get(key)
    if cached is not None and now - cached[0] < _TOKEN_CACHE_SECONDS:
        if record is not None:
            record.connection_id = cached[2]
        return {"Authorization": f"Bearer {cached[1]}"}
    from credentials.errors import ConsentRequired, CredentialError

    try:
        credential = await run_db(_access_token, principal.acting_for, server.provider)
    except ConsentRequired as exc:
        raise GatewayProtocolError(
            errors.CONSENT_REQUIRED,
            f"{principal.acting_for_email} must connect their account for '{server.slug}' "
            f"first: {exc.consent_url}",
            error_class="credential",
            data={
                "elicitations": [
                    {
                        "mode": "url",
                        "elicitationId": f"consent-{server.slug}-{principal.acting_for_id}",
                        "url": exc.consent_url,
                        "message": f"Connect your account for {server.label} to let the agent use it.",
                    }
                ]
            },
        ) from exc
    except CredentialError as exc:
        raise ToolFailure(
            f"The credential for '{server.slug}' is not usable right now: {exc}",
            error_class="credential",
        ) from exc
    if len(_token_cache) > 10_000:
        _token_cache.clear()
    _token_cache[key] = (now, credential.token, credential.connection_id)
    if record is not None:
        record.connection_id = credential.connection_id
    return {"Authorization": f"Bearer {credential.token}"}


def _access_token(user: Any, provider: Any) -> Any:
    from credentials.services import access_credential_for

    return access_credential_for(user=user, provider=provider)


async def _report_drift(server: ServerEntry, tool: str, exc: errors.ToolDrift) -> None:
    """Hand the drift to the catalog (quarantine now, full sync, diff for approvers); the
    refusal stands even if reporting fails."""
    await pool.close_server(server.upstream.key)
    if server.version_id is None:
        return
    from catalog.services import drift_report

    try:
        await run_db(
            drift_report,
            server_version_id=server.version_id,
            tool_name=tool,
            observed_hash=exc.live_hash or "(tool missing upstream)",
        )
    except Exception:
        logger.exception("reporting drift of %s.%s failed", server.slug, tool)


# --------------------------------------------------------------------------- 8 audit


def _audit_arguments(arguments: Any, decision: Decision | None) -> Any:
    if not isinstance(arguments, dict):
        return arguments
    if decision is not None and decision.redaction.arguments:
        arguments = mask_paths(arguments, decision.redaction.arguments)
    return arguments


async def _audit(req: GatewayRequest, record: CallRecord, protocol_version: str | None) -> None:
    decision = record.decision
    identity = decision.tool if decision is not None else None
    elapsed_ms = (time.perf_counter() - record.started) * 1000
    details: dict[str, Any] = {
        "exposed_tool": record.exposed_name,
        "arguments": _audit_arguments(record.arguments, decision),
        "protocol_version": protocol_version,
    }
    if req.toolset:
        details["toolset"] = req.toolset
    if decision is not None:
        details["matched_rules"] = list(decision.matched_rules)
        details["reasons"] = list(decision.reasons)
        details["policy_version"] = decision.policy_version
        if decision.pins:
            details["pinned"] = [p.argument for p in decision.pins]
    if identity is not None:
        details["server_version_id"] = identity.server_version_id
        details["definition_hash"] = identity.definition_hash
    if record.message:
        details["message"] = record.message
    if record.connection_id is not None:
        provider = record.server.provider if record.server is not None else None
        # Not under a "credential" key: the audit redaction masks keys that look secret.
        details["connection_id"] = record.connection_id
        details["connection"] = (
            f"{getattr(provider, 'slug', '')} connection #{record.connection_id}"
        )
    if record.result_is_error:
        details["upstream_is_error"] = True
    allowed = (
        decision is not None
        and decision.allowed
        and record.error_class
        not in (
            "validation",
            "rate_limit",
        )
    )
    tracing.call_outcome(record, allowed)
    principal = req.principal
    try:
        event = audit_services().build_event(
            action="tool.call",
            org=principal.organization,
            agent=principal.agent,
            on_behalf_of=principal.acting_for,
            outcome=record.outcome,
            details=details,
            server=(identity.server if identity else "")[:100],
            tool=(identity.name if identity else record.exposed_name)[:200],
            decision="allow" if allowed else "deny",
            error_class=record.error_class,
            latency_ms=round(elapsed_ms, 3),
            upstream_latency_ms=round(record.upstream_ms, 3) if record.upstream_ms else None,
        )
        # Group commit: returns once the transaction holding this record has committed.
        await audit_writer.write(event)
    except Exception as exc:
        logger.error("audit write failed; refusing the call's result (%s)", type(exc).__name__)
        raise MCPError(
            errors.GATEWAY_UNAVAILABLE,
            "The gateway could not write the audit record for this call, so its result is "
            "withheld. Retry later; if it persists, tell your administrator "
            f"(request id {req.request_id}).",
        ) from exc
    req.audited = True
