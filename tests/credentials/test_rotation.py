"""Vault key rotation: re-wrap under a new master key, optionally re-encrypt every secret under
fresh data keys; resumable, audited, progress visible."""

import base64
import os
from io import StringIO

import pytest
from django.core.management import call_command

from audit.models import AuditEvent
from credentials import rotation, services, vault
from credentials.models import OAuthProvider, OrgDataKey, RotationStatus, VaultRotation
from tests.credentials.factories import ConnectionFactory


def _key(key_id: str) -> str:
    return f"{key_id}:{base64.urlsafe_b64encode(os.urandom(32)).decode()}"


def _all_blobs():
    for entry in vault.encrypted_fields():
        from django.apps import apps

        model = apps.get_model(entry.model_label)
        for row in model.objects.exclude(**{entry.field: ""}):
            yield entry, row, getattr(row, entry.field)


@pytest.fixture
def old_and_new(settings):
    old, new = _key("old"), _key("new")
    settings.VAULT_MASTER_KEYS = [old]
    return settings, old, new


def test_rewrap_only_moves_data_keys_to_the_new_master_key(old_and_new, org_a, org_b):
    settings, old, new = old_and_new
    conns = [ConnectionFactory(organization=org) for org in (org_a, org_a, org_b)]
    blobs_before = {c.pk: c.access_token_blob for c in conns}
    settings.VAULT_MASTER_KEYS = [new, old]

    job = rotation.rotation_start(enqueue=False)
    assert rotation.rotation_run(rotation_id=job.pk) == "done"
    job.refresh_from_db()
    assert job.status == RotationStatus.DONE and job.keys_done == 2
    assert set(OrgDataKey.objects.values_list("master_key_id", flat=True)) == {"new"}
    # Secrets were not touched, and they decrypt without the old master key.
    settings.VAULT_MASTER_KEYS = [new]
    vault.clear_cache()
    for conn in conns:
        conn.refresh_from_db()
        assert conn.access_token_blob == blobs_before[conn.pk]
        services._decrypt_access(conn)
    assert AuditEvent.objects.filter(action="vault.data_key.rewrapped").count() == 2
    assert AuditEvent.objects.filter(action="vault.rotation.finished").exists()


def test_reencrypt_is_resumable_and_leaves_nothing_under_old_keys(old_and_new, org_a, org_b):
    settings, old, new = old_and_new
    settings.VAULT_ROTATE_BATCH_SIZE = 7
    plain = {}
    for org in (org_a, org_b):
        for _ in range(15):
            conn = ConnectionFactory(organization=org)
            plain[conn.pk] = services._decrypt_access(conn)
    old_keys = set(OrgDataKey.objects.values_list("pk", flat=True))
    settings.VAULT_MASTER_KEYS = [new, old]

    job = rotation.rotation_start(reencrypt=True, enqueue=False)
    # Run batch by batch and stop (a killed worker) once some secrets were re-encrypted.
    while job.rows_done < 14:
        assert rotation.rotation_run(rotation_id=job.pk, max_batches=1) == "paused"
        job.refresh_from_db()
    assert job.status == RotationStatus.RUNNING and 0 < job.rows_done < job.rows_total
    vault.clear_cache()  # a new worker process
    assert rotation.rotation_run(rotation_id=job.pk) == "done"
    job.refresh_from_db()
    assert job.status == RotationStatus.DONE and not job.last_error

    settings.VAULT_MASTER_KEYS = [new]
    vault.clear_cache()
    active = set(OrgDataKey.objects.filter(active=True).values_list("pk", flat=True))
    assert not active & old_keys
    count = 0
    for entry, row, blob in _all_blobs():
        assert vault.blob_data_key_id(blob) in active
        vault.decrypt(org=row.organization_id, purpose=entry.purpose, row_uid=row.uid, blob=blob)
        count += 1
    assert count == 30 * 2  # an access and a refresh token each (public-client providers)
    for pk, value in plain.items():
        from credentials.models import Connection

        assert services._decrypt_access(Connection.objects.get(pk=pk)) == value
    assert OrgDataKey.objects.filter(active=False, retired_at__isnull=False).count() == 2


def test_command_shows_progress_and_refuses_a_second_rotation(old_and_new, org_a):
    settings, old, new = old_and_new
    ConnectionFactory(organization=org_a)
    settings.VAULT_MASTER_KEYS = [new, old]
    out = StringIO()
    call_command("vault_rotate", "--sync", "--reencrypt", stdout=out)
    text = out.getvalue()
    assert "Started rotation" in text and "done" in text and "100%" in text
    status = StringIO()
    call_command("vault_rotate", "--status", stdout=status)
    assert "done" in status.getvalue()
    VaultRotation.objects.create(target_master_key_id="new")  # an unfinished one
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="resume it"):
        call_command("vault_rotate", stdout=StringIO())


def test_rotation_progress_is_shown_to_admins(old_and_new, org_a, alice, bob, client_as):
    settings, old, new = old_and_new
    ConnectionFactory(organization=org_a)
    settings.VAULT_MASTER_KEYS = [new, old]
    job = rotation.rotation_start(reencrypt=True, enqueue=False)
    page = client_as(alice).get(f"/o/{org_a.slug}/providers/rotation/")
    assert page.status_code == 200 and f"Rotation #{job.pk}".encode() in page.content
    assert b"every 2s" in page.content  # htmx keeps polling while it runs
    assert client_as(bob).get(f"/o/{org_a.slug}/providers/rotation/").status_code == 403
    rotation.rotation_run(rotation_id=job.pk)
    page = client_as(alice).get(f"/o/{org_a.slug}/providers/rotation/")
    assert b"100%" in page.content and b"every 2s" not in page.content
    assert OAuthProvider.objects.exists()


def test_watchdog_resumes_a_rotation_whose_worker_died(
    old_and_new, org_a, celery_eager, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    settings, old, new = old_and_new
    ConnectionFactory(organization=org_a)
    settings.VAULT_MASTER_KEYS = [new, old]
    job = rotation.rotation_start(reencrypt=True, enqueue=False)
    rotation.rotation_run(rotation_id=job.pk, max_batches=1)
    assert rotation.resume_stalled() == 0  # it made progress just now: not stalled
    VaultRotation.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(minutes=10)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert rotation.resume_stalled() == 1
    job.refresh_from_db()
    assert job.status == RotationStatus.DONE
