"""Retention and legal hold.

An owner sets how many days an organization keeps its trail; a legal hold stops all purging. The
purge removes whole sealed ranges only (never unsealed rows, never part of a seal), oldest
first, in one transaction per run that

1. re-reads the retention row under a lock (a hold set a moment ago wins),
2. tells the Postgres trigger what it may delete (`audit.purge_org`, `audit.purge_until_id`,
   transaction-local settings: outside this transaction the trigger refuses every DELETE),
3. deletes the rows, appends a `purge` seal to the chain recording the removed id range, count
   and the seals it covered, and records an `audit.purged` event.

So the chain still verifies after a purge, and the purge itself is sealed and audited.
"""

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.errors import AuditError
from audit.models import AuditEvent, AuditRetention, AuditSeal, SealKind
from audit.sealing import append_seal, chain_name
from audit.services import record


def retention_for(*, org: Any) -> AuditRetention | None:
    return AuditRetention.objects.filter(organization=org).first()


def retention_set(
    *,
    org: Any,
    actor: Any,
    retention_days: int | None,
    legal_hold: bool,
    hold_reason: str = "",
) -> AuditRetention:
    """Set the retention period and legal hold of `org` (audited). Callers check the permission."""
    if retention_days is not None and retention_days < 30:
        raise AuditError("Keep audit events for at least 30 days.", field="retention_days")
    with transaction.atomic():
        current, _ = AuditRetention.objects.select_for_update().get_or_create(organization=org)
        before = {
            "retention_days": current.retention_days,
            "legal_hold": current.legal_hold,
            "hold_reason": current.hold_reason,
        }
        current.retention_days = retention_days
        current.legal_hold = legal_hold
        current.hold_reason = hold_reason.strip() if legal_hold else ""
        current.updated_at = timezone.now()
        current.save(update_fields=["retention_days", "legal_hold", "hold_reason", "updated_at"])
        record(
            org=org,
            action="audit.retention_changed",
            actor=actor,
            target=current,
            target_label="audit retention",
            details={
                "before": before,
                "after": {
                    "retention_days": retention_days,
                    "legal_hold": legal_hold,
                    "hold_reason": current.hold_reason,
                },
            },
        )
    return current


def purge_history(*, org: Any) -> list[AuditSeal]:
    return list(
        AuditSeal.objects.filter(chain=chain_name(org.id), kind=SealKind.PURGE).order_by(
            "-sequence"
        )[:20]
    )


def audit_purge(*, org_id: int, now: Any = None) -> int:
    """Remove `org_id`'s sealed rows older than its retention, oldest seals first, at most
    AUDIT_PURGE_MAX_ROWS per call. Returns the number of rows removed (0 when held, when no
    retention is set, or when nothing is due). Idempotent and safe to retry."""
    from tenants.models import Organization

    now = now or timezone.now()
    with transaction.atomic():
        policy = AuditRetention.objects.select_for_update().filter(organization_id=org_id).first()
        if policy is None or policy.legal_hold or not policy.retention_days:
            return 0
        cutoff = now - timedelta(days=policy.retention_days)
        chain = chain_name(org_id)
        last_purged = _last_purged_id(chain)
        due: list[AuditSeal] = []
        rows = 0
        for seal in (
            AuditSeal.objects.filter(
                chain=chain, kind=SealKind.EVENTS, last_event_id__gt=last_purged
            )
            .order_by("sequence")
            .iterator(chunk_size=100)
        ):
            # Whole seals only, and only when their newest row is past the cutoff.
            if seal.last_occurred_at is None or seal.last_occurred_at >= cutoff:
                break
            if due and rows + seal.event_count > settings.AUDIT_PURGE_MAX_ROWS:
                break
            due.append(seal)
            rows += seal.event_count
        if not due:
            return 0
        first_id, last_id = due[0].first_event_id, due[-1].last_event_id
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('audit.purge_org', %s, true), "
                    "set_config('audit.purge_until_id', %s, true)",
                    [str(org_id), str(last_id)],
                )
        removed, _ = AuditEvent.objects.filter(
            organization_id=org_id, id__gte=first_id, id__lte=last_id
        ).delete()
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('audit.purge_org', '', true), "
                    "set_config('audit.purge_until_id', '', true)"
                )
        note = {
            "removed_first_event_id": first_id,
            "removed_last_event_id": last_id,
            "removed_count": removed,
            "covered_seals": [due[0].sequence, due[-1].sequence],
            "retention_days": policy.retention_days,
            "cutoff": cutoff.isoformat(),
        }
        append_seal(org_id=org_id, kind=SealKind.PURGE, rows=[], note=note)
        record(
            org=Organization.objects.get(pk=org_id),
            action="audit.purged",
            target_type="audit.range",
            target_id=f"{first_id}-{last_id}",
            target_label=f"events {first_id}-{last_id}",
            details=note,
        )
    return removed


def _last_purged_id(chain: str) -> int:
    seal = AuditSeal.objects.filter(chain=chain, kind=SealKind.PURGE).order_by("-sequence").first()
    return int(seal.note.get("removed_last_event_id") or 0) if seal else 0
