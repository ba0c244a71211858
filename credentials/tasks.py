"""Celery tasks of the credentials app: thin, idempotent, taking ids; the services claim rows
with `select_for_update(skip_locked=True)` and re-check under the lock."""

from celery import shared_task

from credentials import rotation, services

REFRESH_BATCH = 500


@shared_task(name="credentials.tasks.refresh_expiring_connections_task")
def refresh_expiring_connections_task() -> dict[str, int]:
    """Every minute (beat): refresh connections expiring soon, retry pending revocations.
    Bounded; re-enqueues itself when a full batch was due."""
    counts = services.refresh_due_connections(limit=REFRESH_BATCH)
    if counts["due"] >= REFRESH_BATCH:
        refresh_expiring_connections_task.delay()
    return counts


@shared_task(name="credentials.tasks.refresh_connection_task")
def refresh_connection_task(connection_id: int) -> bool:
    """Refresh one connection if it is still due (skipped if another worker holds it)."""
    return services.connection_refresh(connection_id=connection_id) is not None


@shared_task(name="credentials.tasks.revoke_connection_task")
def revoke_connection_task(connection_id: int) -> bool:
    """Revoke a `revoked` connection at its provider and delete it (retried by the sweep)."""
    return services.revoke_connection(connection_id=connection_id)


@shared_task(name="credentials.tasks.vault_rotate_task")
def vault_rotate_task(rotation_id: int) -> str:
    """Run (or resume) a key rotation job in bounded batches; safe to run twice at once."""
    return rotation.rotation_run(rotation_id=rotation_id)


@shared_task(name="credentials.tasks.vault_rotation_watchdog_task")
def vault_rotation_watchdog_task() -> int:
    """Re-enqueue rotation jobs whose worker died (no progress for a while)."""
    return rotation.resume_stalled()
