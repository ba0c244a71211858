"""The audit app's domain errors (mapped once at the edges: form errors, flash messages, 400s)."""

from tenants.errors import DomainError


class AuditError(DomainError):
    """An audit request that cannot be carried out; the message says what to do."""


class AuditQueryError(AuditError):
    """A filter combination the database could not answer within the time budget."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="query_too_broad")
