"""OpenTelemetry tracing of the gateway pipeline: off unless an OTLP endpoint is configured.

When `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set, `lifespan()`
(entered by the MCP endpoint's lifespan, once per process) builds a TracerProvider of our own
(service name `OTEL_SERVICE_NAME`, default "mcp-gateway") with a BatchSpanProcessor and the
OTLP/HTTP exporter, and flushes it at shutdown. The provider is private: it is not installed
as OpenTelemetry's global provider, so only the spans below are exported, never the SDK's own
(whose status text can carry an upstream's error message).

Spans (docs/gateway.md, "Tracing"):

    mcp.request              one per tools/call and tools/list (kind SERVER); its parent is the
                             caller's W3C `traceparent` (HTTP header, else `params._meta`)
      gateway.authorize      policy decision, argument validation, pinned arguments
      gateway.limit          rate limits and quotas
      gateway.credential     the upstream credential (never its value)
      gateway.upstream       the upstream call
      gateway.filter         redaction and size cap
      gateway.audit          the audit record's commit

Attributes are identifiers an operator needs (org, agent, tool, server, decision, error class,
the request id that is also in the audit record and the log lines, latencies) and never an
argument, a result, a key, a token or a message text. Exceptions are not recorded (their
messages can quote arguments); a failed step carries `error.type` = the error class only.

When tracing is off `step()` returns one shared no-op context manager and `traced_request`
awaits the handler directly: no SDK object exists and nothing is allocated per call.

The trace context is never sent upstream (third parties) unless
`GATEWAY_TRACE_PROPAGATE_UPSTREAM` is true: `lifespan()` sets OpenTelemetry's global
propagator (which the SDK's client uses to fill `params._meta`) to an empty one, and the
gateway reads the inbound `traceparent` with a propagator of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

logger = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "mcp-gateway"
TRACER_NAME = "mcp-governance-gateway"

_provider: TracerProvider | None = None
_tracer: Tracer | None = None
_inbound = TraceContextTextMapPropagator()
_DEFAULT_TEXTMAP = propagate.get_global_textmap()
_NO_PROPAGATION = CompositePropagator([])
# The current mcp.request span, for attributes known only at the end of the pipeline.
_request_span: ContextVar[Any] = ContextVar("gateway_request_span", default=None)


def enabled() -> bool:
    return _tracer is not None


def propagates_upstream() -> bool:
    """Whether the global propagator would put a trace context into upstream requests."""
    return propagate.get_global_textmap() is not _NO_PROPAGATION


def traces_endpoint(endpoint: str | None = None, traces_endpoint: str | None = None) -> str | None:
    """The OTLP/HTTP URL spans are POSTed to: the traces endpoint as given, else the base
    endpoint + /v1/traces (the OpenTelemetry convention); None when neither is set."""
    if traces_endpoint:
        return traces_endpoint
    if endpoint:
        return endpoint.rstrip("/") + "/v1/traces"
    return None


def _settings() -> tuple[str | None, str, bool]:
    from django.conf import settings

    url = traces_endpoint(
        getattr(settings, "OTEL_EXPORTER_OTLP_ENDPOINT", None),
        getattr(settings, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None),
    )
    service = getattr(settings, "OTEL_SERVICE_NAME", None) or DEFAULT_SERVICE_NAME
    propagate_upstream = bool(getattr(settings, "GATEWAY_TRACE_PROPAGATE_UPSTREAM", False))
    return url, service, propagate_upstream


def setup(
    endpoint: str | None = None,
    *,
    service_name: str | None = None,
    propagate_upstream: bool | None = None,
) -> bool:
    """Configure tracing from the settings (or the arguments); True when spans are exported.
    Idempotent: a second call while a provider exists changes nothing."""
    global _provider, _tracer
    configured_url, configured_service, configured_propagate = _settings()
    url = endpoint or configured_url
    # The SDK's client injects the current trace context into every upstream request's
    # `_meta` through the global propagator; upstreams are third parties.
    if configured_propagate if propagate_upstream is None else propagate_upstream:
        propagate.set_global_textmap(_DEFAULT_TEXTMAP)
    else:
        propagate.set_global_textmap(_NO_PROPAGATION)
    if _provider is not None or not url:
        return _provider is not None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: service_name or configured_service})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    _provider = provider
    _tracer = provider.get_tracer(TRACER_NAME)
    logger.info("OpenTelemetry tracing on: spans go to %s", url)
    return True


def flush(timeout_millis: int = 10_000) -> bool:
    """Export every finished span now (tests; shutdown)."""
    return _provider.force_flush(timeout_millis) if _provider is not None else True


def shutdown() -> None:
    """Flush and stop the exporter; tracing is off afterwards (a later setup() may turn it on)."""
    global _provider, _tracer
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        try:
            provider.shutdown()
        except Exception:
            logger.exception("shutting down the trace exporter failed")


@contextlib.asynccontextmanager
async def lifespan() -> AsyncIterator[None]:
    """Tracing for the life of the MCP endpoint: set up at start, flushed at shutdown."""
    setup()
    try:
        yield
    finally:
        await asyncio.to_thread(shutdown)


# --------------------------------------------------------------------------- spans


class _NoOpStep:
    """The shared stand-in for a span when tracing is off."""

    __slots__ = ()

    def __enter__(self) -> _NoOpStep:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set_attribute(self, key: str, value: Any) -> None:
        return None

    def is_recording(self) -> bool:
        return False


NOOP = _NoOpStep()


def _error_class(exc: BaseException) -> str:
    return str(getattr(exc, "error_class", "") or type(exc).__name__)


class _Step:
    __slots__ = ("_cm", "_span")

    def __init__(self, tracer: Tracer, name: str, attributes: dict[str, Any] | None) -> None:
        # Exceptions are not recorded: their messages can quote argument values.
        self._cm = tracer.start_as_current_span(
            name, attributes=attributes, record_exception=False, set_status_on_exception=False
        )

    def __enter__(self) -> Any:
        self._span = self._cm.__enter__()
        return self._span

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Any:
        if exc is not None and not isinstance(exc, GeneratorExit):
            self._span.set_attribute("error.type", _error_class(exc))
            self._span.set_status(Status(StatusCode.ERROR))
        return self._cm.__exit__(exc_type, exc, tb)


def step(name: str, **attributes: str | int | float | bool) -> Any:
    """`with tracing.step("authorize"):` a child span `gateway.<name>` of the current request;
    the shared no-op when tracing is off. Attributes must be identifiers, never values."""
    tracer = _tracer
    if tracer is None:
        return NOOP
    return _Step(
        tracer, f"gateway.{name}", {f"gateway.{k}": v for k, v in attributes.items()} or None
    )


def _parent_context(ctx: Any) -> Context:
    """The caller's W3C trace context: the HTTP `traceparent` header, else `params._meta`;
    an empty context (a new trace) when neither is valid."""
    for carrier in (getattr(getattr(ctx, "request", None), "headers", None), ctx.meta):
        if not carrier or not hasattr(carrier, "get") or not carrier.get("traceparent"):
            continue
        try:
            extracted = _inbound.extract(carrier)
        except (TypeError, ValueError):
            continue
        if get_current_span(extracted).get_span_context().is_valid:
            return extracted
    return Context()


Handler = Callable[[Any, Any], Awaitable[Any]]


def traced_request(
    method: str, gateway_request: Callable[[Any], Any]
) -> Callable[[Handler], Handler]:
    """Decorate a pipeline handler: one `mcp.request` span around it when tracing is on."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(ctx: Any, params: Any) -> Any:
            tracer = _tracer
            if tracer is None:
                return await handler(ctx, params)
            try:
                req = gateway_request(ctx)
            except Exception:
                return await handler(ctx, params)  # unauthenticated: the handler refuses it
            principal = req.principal
            attributes: dict[str, Any] = {
                "mcp.method.name": method,
                "gateway.request_id": req.request_id,
                "gateway.org": principal.organization.slug,
                "gateway.agent": principal.agent.slug,
            }
            if ctx.protocol_version:
                attributes["mcp.protocol.version"] = str(ctx.protocol_version)
            if req.toolset:
                attributes["gateway.toolset"] = req.toolset
            name = getattr(params, "name", None)
            if isinstance(name, str):
                attributes["gateway.exposed_tool"] = name
            with tracer.start_as_current_span(
                "mcp.request",
                context=_parent_context(ctx),
                kind=SpanKind.SERVER,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                token = _request_span.set(span)
                try:
                    result = await handler(ctx, params)
                except BaseException as exc:
                    error = getattr(exc, "error", None)
                    code = getattr(error, "code", None)
                    if code is not None:
                        span.set_attribute("rpc.jsonrpc.error_code", int(code))
                    if not span.attributes or "error.type" not in span.attributes:
                        span.set_attribute("error.type", _error_class(exc))
                    span.set_status(Status(StatusCode.ERROR))
                    raise
                finally:
                    _request_span.reset(token)
                tools = getattr(result, "tools", None)
                if tools is not None:
                    span.set_attribute("gateway.tools_listed", len(tools))
                if getattr(result, "is_error", False):
                    span.set_status(Status(StatusCode.ERROR))
                return result

        return wrapper

    return decorate


def call_outcome(record: Any, allowed: bool) -> None:
    """Put what the audit record says about a tools/call on its `mcp.request` span (the same
    fields as the audit row, never its arguments or message)."""
    span = _request_span.get()
    if span is None:
        return
    decision = record.decision
    identity = decision.tool if decision is not None else None
    attributes: dict[str, Any] = {
        "gateway.decision": "allow" if allowed else "deny",
        "gateway.outcome": record.outcome,
    }
    if identity is not None:
        attributes["gateway.server"] = identity.server
        attributes["gateway.tool"] = identity.name
    if decision is not None and decision.policy_version:
        attributes["gateway.policy_version"] = str(decision.policy_version)
    if record.error_class:
        attributes["error.type"] = record.error_class
    if record.upstream_ms is not None:
        attributes["gateway.upstream_ms"] = round(record.upstream_ms, 3)
    if record.connection_id is not None:
        attributes["gateway.connection_id"] = record.connection_id
    if record.result_is_error:
        attributes["gateway.upstream_is_error"] = True
    attributes["gateway.latency_ms"] = round((time.perf_counter() - record.started) * 1000, 3)
    span.set_attributes(attributes)
