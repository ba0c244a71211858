"""Periodic audit work: sealing, metrics rollups and the retention purge. Each task is thin,
idempotent and bounded (it takes ids, claims its work with a lock or a unique constraint, and
does at most a configured number of batches per run)."""

from celery import shared_task

from audit import metrics, retention, sealing


@shared_task(name="audit.tasks.audit_seal_task")
def audit_seal_task(org_id: int | None = None) -> int:
    """Seal new rows of one organization, or of every chain when no id is given."""
    chains = [org_id] if org_id is not None else sealing.chains_with_events()
    return sum(sealing.seal_chain(org_id=chain) for chain in chains)


@shared_task(name="audit.tasks.audit_rollup_task")
def audit_rollup_task() -> int:
    return metrics.rollup_build()


@shared_task(name="audit.tasks.audit_purge_task")
def audit_purge_task(org_id: int | None = None) -> int:
    """Apply retention to one organization, or to every organization with a retention set.
    Sealing runs first so rows due for purging are sealed (the purge removes sealed ranges only)."""
    from audit.models import AuditRetention

    if org_id is not None:
        ids = [org_id]
    else:
        ids = list(
            AuditRetention.objects.filter(legal_hold=False, retention_days__isnull=False)
            .order_by("organization_id")
            .values_list("organization_id", flat=True)
        )
    removed = 0
    for each in ids:
        sealing.seal_chain(org_id=each)
        removed += retention.audit_purge(org_id=each)
    return removed
