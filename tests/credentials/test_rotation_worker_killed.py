"""10,000 secrets, a real Celery worker re-encrypting them is killed (SIGKILL) mid-rotation,
another resumes: every secret decrypts with only the new master key, none is under an old data
key, nothing was lost."""

import base64
import os
import time

import pytest
from django.db import connection

from audit.models import AuditEvent
from credentials import rotation, services, vault
from credentials.models import OAuthProvider, OrgDataKey, RotationStatus, VaultRotation
from tests.credentials.workers import new_queue, sender, start_worker
from tests.factories import OrganizationFactory

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
ORGS, PER_ORG = 10, 1000


def _key(key_id: str) -> str:
    return f"{key_id}:{base64.urlsafe_b64encode(os.urandom(32)).decode()}"


def _wait(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


@pytest.mark.django_db(transaction=True)
def test_rotation_of_10000_secrets_survives_a_killed_worker(settings):
    if connection.vendor != "postgresql":
        pytest.skip("needs Postgres (worker processes share the test database)")
    old, new = _key("old"), _key("new")
    settings.VAULT_MASTER_KEYS = [old]
    vault.clear_cache()
    expected: dict[int, str] = {}
    for _ in range(ORGS):
        org = OrganizationFactory()
        key_row = vault.create_data_key(org_id=org.pk)
        rows = []
        for i in range(PER_ORG):
            p = OAuthProvider(
                organization=org,
                name=f"P{i}",
                slug=f"p{i}",
                client_id=f"c{i}",
                authorization_endpoint="https://a.test/a",
                token_endpoint="https://a.test/t",
            )
            p.client_secret_blob = vault.encrypt_with_key(
                org_id=org.pk,
                purpose=services.CLIENT_SECRET_PURPOSE,
                row_uid=p.uid,
                plaintext=f"secret-{org.pk}-{i}",
                key_row=key_row,
            )
            rows.append(p)
        OAuthProvider.objects.bulk_create(rows, batch_size=1000)
    for p in OAuthProvider.objects.values("pk", "organization_id", "slug"):
        expected[p["pk"]] = f"secret-{p['organization_id']}-{p['slug'][1:]}"
    assert len(expected) == ORGS * PER_ORG
    old_keys = set(OrgDataKey.objects.values_list("pk", flat=True))

    settings.VAULT_MASTER_KEYS = [new, old]
    vault.clear_cache()
    job = rotation.rotation_start(reencrypt=True, enqueue=False)
    assert job.rows_total == ORGS * PER_ORG
    queue, app = new_queue(), sender()
    env = {"VAULT_MASTER_KEYS": f"{new},{old}", "VAULT_ROTATE_BATCH_SIZE": "250"}

    first = start_worker(queue, "rotate-a", concurrency=1, **env)
    try:
        app.send_task("credentials.tasks.vault_rotate_task", args=[job.pk], queue=queue)
        _wait(lambda: VaultRotation.objects.get(pk=job.pk).rows_done >= 3000)
    finally:
        first.kill()  # SIGKILL, mid-batch: that batch's transaction is lost, nothing else
    job.refresh_from_db()
    assert job.status == RotationStatus.RUNNING
    assert 3000 <= job.rows_done < ORGS * PER_ORG
    progress_line = f"{rotation.progress(job)}%"

    second = start_worker(queue, "rotate-b", concurrency=1, **env)
    try:
        resumed = rotation.rotation_resume(enqueue=False)
        assert resumed.pk == job.pk
        app.send_task("credentials.tasks.vault_rotate_task", args=[job.pk], queue=queue)
        _wait(lambda: VaultRotation.objects.get(pk=job.pk).status != RotationStatus.RUNNING)
    finally:
        second.stop()
    job.refresh_from_db()
    assert job.status == RotationStatus.DONE, job.last_error
    assert not job.last_error
    assert progress_line != "100%"

    # Only the new master key is needed now, and no secret is under an old data key.
    settings.VAULT_MASTER_KEYS = [new]
    vault.clear_cache()
    assert set(OrgDataKey.objects.values_list("master_key_id", flat=True)) == {"new"}
    active = dict(OrgDataKey.objects.filter(active=True).values_list("organization_id", "pk"))
    assert not set(active.values()) & old_keys
    decrypted = 0
    for p in OAuthProvider.objects.only("pk", "uid", "organization", "client_secret_blob"):
        assert vault.blob_data_key_id(p.client_secret_blob) == active[p.organization_id]
        assert services.provider_client(p).client_secret == expected[p.pk]
        decrypted += 1
    assert decrypted == ORGS * PER_ORG
    assert AuditEvent.objects.filter(action="vault.data_key.replaced").count() == ORGS
    assert AuditEvent.objects.get(action="vault.rotation.finished").details["leftover"] == 0
