"""The gateway's error vocabulary, mapped once to what an agent sees.

Two kinds, as MCP intends:
- protocol errors (`GatewayProtocolError`): a JSON-RPC error with a precise code. The agent
  called something it may not or cannot call (unknown tool, denied by policy, rate limited,
  consent needed).
- tool-level failures (`ToolFailure`): a `CallToolResult(isError=true)` whose text the agent
  (an LLM) reads and can act on (bad arguments, upstream failed, timed out, circuit open).

Every one carries an `error_class` for the audit trail and metrics.
"""

from __future__ import annotations

from typing import Any, Literal

from mcp_types import INVALID_PARAMS, URL_ELICITATION_REQUIRED

ErrorClass = Literal[
    "validation", "policy", "rate_limit", "credential", "upstream", "timeout", "circuit_open"
]

# Implementation-defined JSON-RPC server error codes (-32000..-32099), documented in
# docs/gateway.md. The SDK and the spec use -32000, -32001, -32020..-32022 and -32042.
POLICY_DENIED = -32010
RATE_LIMITED = -32029
CREDENTIAL_UNAVAILABLE = -32031
GATEWAY_UNAVAILABLE = -32050

UNKNOWN_TOOL = INVALID_PARAMS
CONSENT_REQUIRED = URL_ELICITATION_REQUIRED


class GatewayError(Exception):
    error_class: ErrorClass = "upstream"

    def __init__(self, message: str, *, error_class: ErrorClass | None = None) -> None:
        super().__init__(message)
        self.message = message
        if error_class is not None:
            self.error_class = error_class


class GatewayProtocolError(GatewayError):
    """Answered as a JSON-RPC error `code` with `message` and optional `data`."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        error_class: ErrorClass,
        data: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, error_class=error_class)
        self.code = code
        self.data = data


class ToolFailure(GatewayError):
    """Answered as `CallToolResult(isError=true)` with `message` as its text."""


class UpstreamUnavailable(ToolFailure):
    """The upstream could not be reached or dropped the connection (before or during a call).
    `connect_failure` is True when nothing was sent: only then is a retry safe for any tool."""

    def __init__(self, message: str, *, connect_failure: bool = False) -> None:
        super().__init__(message, error_class="upstream")
        self.connect_failure = connect_failure


class UpstreamTimeout(ToolFailure):
    def __init__(self, message: str) -> None:
        super().__init__(message, error_class="timeout")


class CircuitOpen(ToolFailure):
    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, error_class="circuit_open")
        self.retry_after = retry_after


class AuditUnavailable(GatewayError):
    """The audit record could not be written: the call fails (no unaudited call)."""


class ToolDrift(ToolFailure):
    """The upstream's live definition of the tool no longer hashes to the approved one: the call
    is refused and the catalog's drift handling quarantines the tool for review."""

    def __init__(self, message: str, *, live_hash: str | None) -> None:
        super().__init__(message, error_class="upstream")
        self.live_hash = live_hash
