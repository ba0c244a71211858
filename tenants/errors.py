"""Domain errors. Every app's error type subclasses DomainError; the edges map them once:
the REST API to 400/403 with field errors, the UI to form errors or flash messages, the gateway
to JSON-RPC errors. The message tells the user what to do."""


class DomainError(Exception):
    status_code = 400

    def __init__(self, message: str, *, field: str | None = None, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


class PermissionDeniedError(DomainError):
    """The actor is a member but their role does not allow this action."""

    status_code = 403

    def __init__(
        self, message: str, *, field: str | None = None, code: str = "permission_denied"
    ) -> None:
        super().__init__(message, field=field, code=code)


class TenantError(DomainError):
    """A tenants request that cannot be carried out."""
