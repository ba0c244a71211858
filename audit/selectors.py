"""Reading the audit trail: keyset pages (never OFFSET), the request correlation, and a statement
timeout around every filtered read so no combination of filters can run an unbounded query."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import QuerySet

from audit.errors import AuditQueryError
from audit.filters import AuditQuery
from audit.models import AuditEvent, AuditExport, AuditSeal

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
CORRELATION_LIMIT = 200


def audit_events_for_org(*, org: object) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.for_org(org).order_by("-id")


def audit_event_get(*, org: object, id: int) -> AuditEvent:
    return AuditEvent.objects.get_for_org_or_404(org, pk=id)


def audit_export_get(*, org: object, id: int) -> AuditExport:
    return AuditExport.objects.get_for_org_or_404(org, pk=id)


def audit_seal_get(*, org: object, id: int) -> AuditSeal:
    return AuditSeal.objects.get_for_org_or_404(org, pk=id)


@contextmanager
def bounded_query() -> Iterator[None]:
    """Run the enclosed reads with a statement timeout (Postgres) and turn a timeout into an
    AuditQueryError that asks the user to narrow the filters."""
    if connection.vendor != "postgresql":
        yield
        return
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('statement_timeout', %s, true)",
                    [str(int(settings.AUDIT_QUERY_TIMEOUT_MS))],
                )
            yield
    except OperationalError as exc:
        if "statement timeout" in str(exc) or "canceling statement" in str(exc):
            raise AuditQueryError(
                "This search took too long. Add a time range or a more specific filter."
            ) from exc
        raise


@dataclass
class Page:
    events: list[AuditEvent]
    next_before: int | None  # pass as `before` to get the next (older) page


def audit_events_page(
    *, org: object, query: AuditQuery, before: int | None = None, size: int = PAGE_SIZE
) -> Page:
    """One page, newest first: `id < before`, ORDER BY id DESC, LIMIT size + 1 (to know whether
    an older page exists). Walks the (organization, ..., -id) indexes; never counts, never skips."""
    size = max(1, min(size, MAX_PAGE_SIZE))
    qs = query.apply(audit_events_for_org(org=org))
    if before is not None:
        qs = qs.filter(id__lt=before)
    with bounded_query():
        rows = list(qs[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return Page(events=rows, next_before=rows[-1].id if more and rows else None)


def audit_correlated_events(*, org: object, event: AuditEvent) -> list[AuditEvent]:
    """Every event of the same request (the request id ties a user's click, or an agent's call,
    to the tool call, the upstream outcome and the credential used), in order."""
    if not event.request_id:
        return [event]
    return list(
        AuditEvent.objects.for_org(org)
        .filter(request_id=event.request_id)
        .order_by("id")[:CORRELATION_LIMIT]
    )


def covering_seal(*, org_id: int, last_event_id: int) -> AuditSeal | None:
    """The first seal of the org's chain whose range reaches `last_event_id`."""
    return (
        AuditSeal.objects.filter(
            chain=f"org:{org_id}", kind="events", last_event_id__gte=last_event_id
        )
        .order_by("sequence")
        .first()
    )


def latest_seal(*, org_id: int) -> AuditSeal | None:
    return AuditSeal.objects.filter(chain=f"org:{org_id}").order_by("-sequence").first()
