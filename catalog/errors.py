"""Catalog errors. Each carries a message that tells the user what to do; the edges (REST API
exception handler, views) show it. None of them ever carries a secret."""

from tenants.errors import DomainError


class CatalogError(DomainError):
    """A catalog request that cannot be carried out (bad field, wrong state)."""


class ReviewError(CatalogError):
    """A review step that is not allowed now (self-approval, wrong status, missing note...)."""

    def __init__(self, message: str, *, field: str | None = None, code: str = "review") -> None:
        super().__init__(message, field=field, code=code)


class UpstreamError(CatalogError):
    """Talking to an upstream MCP server failed. `code` classifies it for the UI and the
    gateway: unreachable, timeout, not_mcp, too_large, too_many_tools, invalid_definitions,
    egress_refused, sandbox_unavailable, exited, protocol, auth_required; and for per-user OAuth
    servers consent_required (with `consent_url`: where the user connects their account) and
    credential_unavailable."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "upstream",
        field: str | None = None,
        consent_url: str = "",
    ) -> None:
        super().__init__(message, field=field, code=code)
        self.consent_url = consent_url
