"""Celery tasks of the catalog: drift detection and background tool fetches.
Thin: take ids, claim, call a service."""

import logging

from celery import shared_task

from catalog import services

logger = logging.getLogger(__name__)


@shared_task(name="catalog.tasks.sync_due_servers_task", ignore_result=True)
def sync_due_servers_task() -> list[int]:
    """Beat entry point (every CATALOG_SYNC_INTERVAL): claim the serving servers due for a
    re-fetch, in a bounded batch, and queue one sync per server."""
    claimed = services.claim_due_servers()
    for server_id in claimed:
        sync_server_task.delay(server_id)
    return claimed


@shared_task(name="catalog.tasks.sync_server_task", ignore_result=True)
def sync_server_task(server_id: int) -> dict:
    """Re-fetch one server's tools and quarantine what drifted. Idempotent: a second run with
    the same upstream state changes nothing."""
    try:
        return services.server_sync(server_id=server_id)
    except services.Server.DoesNotExist:
        return {"skipped": "gone"}
    finally:
        services.release_claim(server_id=server_id)


@shared_task(name="catalog.tasks.fetch_tools_task", ignore_result=True)
def fetch_tools_task(fetch_job_id: int) -> str:
    """Run one "Fetch tools" job. Idempotent: the job is claimed with a conditional update, so
    a redelivered or duplicated task finds it claimed (or finished) and does nothing."""
    try:
        return services.fetch_job_run(job_id=fetch_job_id).state
    except services.FetchJob.DoesNotExist:
        return "gone"
