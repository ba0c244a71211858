"""Helpers shared by the demo MCP servers (no Django here: these run as plain MCP servers)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

FINGERPRINT_HEX_CHARS = 16
NO_CREDENTIAL = "none"

# The demo systems are closed worlds (no calls out), hence open_world_hint=False throughout.
READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
ADDITIVE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
# Deleting twice leaves the same state as deleting once: destructive but idempotent.
DESTRUCTIVE = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)


def authorization_fingerprint(authorization: str | None) -> str:
    """A short, one-way fingerprint of an Authorization header value.

    `whoami` answers with this instead of the header so a test can prove which credential
    reached the upstream without the upstream ever echoing a secret back.
    """
    if not authorization:
        return NO_CREDENTIAL
    digest = hashlib.sha256(authorization.encode()).hexdigest()
    return f"sha256:{digest[:FINGERPRINT_HEX_CHARS]}"


def request_fingerprint(ctx: Context) -> str:
    """Fingerprint of the Authorization header on the current request ("none" over stdio)."""
    headers: Mapping[str, str] | None = ctx.headers
    return authorization_fingerprint(headers.get("authorization") if headers else None)


def utc_now() -> datetime:
    return datetime.now(UTC)


def parse_since(value: str) -> datetime:
    """Parse an ISO 8601 date or date-time; a naive value is taken as UTC.

    Raises ToolError (an is_error result the agent can read) rather than a protocol error,
    because a bad date is the model's mistake to correct, not the client's.
    """
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ToolError(
            f"updated_since must be an ISO 8601 date or date-time such as "
            f"'2026-01-31' or '2026-01-31T09:00:00Z', got {value!r}"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def isoformat(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def add_whoami_tool(server: MCPServer) -> None:
    """Register `whoami`, which reports which credential reached this server (as a fingerprint)."""

    async def whoami(ctx: Context) -> str:
        """Fingerprint (sha256 prefix) of the Authorization header received, or 'none'."""
        return request_fingerprint(ctx)

    server.add_tool(whoami, title="Who am I", annotations=READ_ONLY)
