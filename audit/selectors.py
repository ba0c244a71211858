"""Reading the audit trail."""

from django.db.models import QuerySet

from audit.models import AuditEvent


def audit_events_for_org(*, org: object) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.for_org(org).order_by("-id")


def audit_event_get(*, org: object, id: int) -> AuditEvent:
    return AuditEvent.objects.get_for_org_or_404(org, pk=id)
