"""Vault key rotation: a resumable job (`VaultRotation`) run by a Celery task in bounded batches.

Phases:
1. rewrap    every data key not wrapped by the key ring's first master key is unwrapped with its
             old master key and wrapped with the new one (the data key itself is unchanged, so no
             secret needs touching). Audited per organization.
2. fresh     (only with re-encryption) each organization's active data key is retired from
             encrypting and a fresh one becomes active.
3. reencrypt (only with re-encryption) every registered encrypted field
             (`vault.register_encrypted_field`) is walked in pk order; each blob not under its
             organization's active key is decrypted and encrypted again, rows locked, one batch
             per transaction, the cursor saved in that same transaction.
4. finish    a verification scan; retired keys are marked; audited.

Each batch runs with the job row locked (`skip_locked`): two runners of one job alternate
batches instead of colliding, and a runner killed mid-batch loses only that uncommitted batch.
Every step re-checks state (keys already under the target master key, blobs already under the
active data key are skipped), so resuming after a crash is always safe.
"""

import logging
from datetime import timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

import audit
from credentials import vault
from credentials.errors import CredentialError, VaultError
from credentials.models import OrgDataKey, RotationStatus, VaultRotation

logger = logging.getLogger(__name__)

STALL_AFTER = timedelta(minutes=2)
MAX_RESCANS = 3
_UNFINISHED = (RotationStatus.PENDING, RotationStatus.RUNNING)


def _batch_size() -> int:
    return max(1, int(getattr(settings, "VAULT_ROTATE_BATCH_SIZE", 500)))


def _count_rows() -> int:
    total = 0
    for entry in vault.encrypted_fields():
        model = apps.get_model(entry.model_label)
        total += model._default_manager.exclude(
            Q(**{entry.field: ""}) | Q(**{f"{entry.field}__isnull": True})
        ).count()
    return total


def rotation_start(
    *, actor: Any | None = None, reencrypt: bool = False, enqueue: bool = True
) -> VaultRotation:
    """Create a rotation job towards the key ring's first master key and enqueue it (unless
    `enqueue=False`: the caller runs it, e.g. `vault_rotate --sync`)."""
    target = vault.active_master_key().id
    with transaction.atomic():
        running = VaultRotation.objects.select_for_update().filter(status__in=_UNFINISHED).first()
        if running is not None:
            raise CredentialError(
                f"Rotation #{running.pk} is still {running.status}: resume it with "
                "`manage.py vault_rotate --resume` instead of starting another.",
                code="rotation_running",
            )
        job = VaultRotation.objects.create(
            target_master_key_id=target,
            reencrypt=reencrypt,
            started_by=actor,
            keys_total=OrgDataKey.objects.count(),
            rows_total=_count_rows() if reencrypt else 0,
        )
        audit.record(
            org=None,
            action="vault.rotation.started",
            actor=actor,
            target=job,
            details={"target_master_key_id": target, "reencrypt": reencrypt},
        )
        if enqueue:
            _enqueue(job.pk)
    return job


def rotation_resume(*, rotation_id: int | None = None, enqueue: bool = True) -> VaultRotation:
    qs = VaultRotation.objects.filter(status__in=_UNFINISHED)
    job = qs.filter(pk=rotation_id).first() if rotation_id else qs.order_by("-id").first()
    if job is None:
        raise CredentialError("There is no unfinished rotation to resume.", code="no_rotation")
    if enqueue:
        _enqueue(job.pk)
    return job


def _enqueue(rotation_id: int) -> None:
    from credentials.tasks import vault_rotate_task

    transaction.on_commit(lambda: vault_rotate_task.delay(rotation_id), robust=True)


def resume_stalled() -> int:
    cutoff = timezone.now() - STALL_AFTER
    stalled = VaultRotation.objects.filter(status__in=_UNFINISHED).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
    )
    ids = list(stalled.values_list("pk", flat=True))
    for rotation_id in ids:
        _enqueue(rotation_id)
    return len(ids)


def rotation_run(*, rotation_id: int, max_batches: int | None = None) -> str:
    """Run batches until the job is done (or another runner holds it, or `max_batches`)."""
    batches = 0
    while True:
        outcome = _step(rotation_id)
        batches += 1
        if outcome != "continue":
            return outcome
        if max_batches is not None and batches >= max_batches:
            return "paused"


def progress(job: VaultRotation) -> int:
    total = job.keys_total + job.rows_total
    if job.status == RotationStatus.DONE:
        return 100
    if not total:
        return 0
    return min(99, int(100 * (job.keys_done + job.rows_done) / total))


def _step(rotation_id: int) -> str:
    with transaction.atomic():
        job = (
            VaultRotation.objects.select_for_update(skip_locked=True).filter(pk=rotation_id).first()
        )
        if job is None:
            return "busy" if VaultRotation.objects.filter(pk=rotation_id).exists() else "missing"
        if job.status in (RotationStatus.DONE, RotationStatus.FAILED):
            return job.status
        target = vault.active_master_key().id
        if job.target_master_key_id != target:
            return _fail(
                job,
                f"The key ring's first key is now {target!r}, not {job.target_master_key_id!r}: "
                "start a new rotation.",
            )
        job.status = RotationStatus.RUNNING
        job.heartbeat_at = timezone.now()
        try:
            if job.phase == "rewrap":
                _rewrap_batch(job)
            elif job.phase == "fresh":
                _fresh_keys_batch(job)
            elif job.phase == "reencrypt":
                _reencrypt_batch(job)
            else:
                _finish(job)
        except VaultError as exc:
            return _fail(job, exc.message)
        job.save()
        return "done" if job.status == RotationStatus.DONE else "continue"


def _fail(job: VaultRotation, message: str) -> str:
    job.status = RotationStatus.FAILED
    job.last_error = message[:500]
    job.finished_at = timezone.now()
    job.save()
    audit.record(
        org=None,
        action="vault.rotation.failed",
        target=job,
        outcome="error",
        details={"error": job.last_error, "phase": job.phase},
    )
    return RotationStatus.FAILED


def _rewrap_batch(job: VaultRotation) -> None:
    target = vault.active_master_key()
    keys = list(
        OrgDataKey.objects.select_for_update(of=("self",))
        .exclude(master_key_id=target.id)
        .order_by("pk")[: _batch_size()]
    )
    if not keys:
        job.phase = "fresh" if job.reencrypt else "finish"
        return
    now = timezone.now()
    for key in keys:
        plain = vault.unwrap_data_key(key)
        previous = key.master_key_id
        key.wrapped_key = vault.wrap_data_key(
            org_id=key.organization_id, key_uid=key.uid, data_key=plain, mk=target
        )
        key.master_key_id = target.id
        key.rewrapped_at = now
        key.save(update_fields=["wrapped_key", "master_key_id", "rewrapped_at"])
        audit.record(
            org=key.organization,
            action="vault.data_key.rewrapped",
            target=key,
            details={"rotation": job.pk, "from_master_key": previous, "to_master_key": target.id},
        )
    job.keys_done += len(keys)


def _fresh_keys_batch(job: VaultRotation) -> None:
    old = list(
        OrgDataKey.objects.select_for_update(of=("self",))
        .filter(active=True, created_at__lt=job.created_at)
        .order_by("pk")[: _batch_size()]
    )
    if not old:
        job.phase = "reencrypt"
        job.cursor = {"field": 0, "after": 0, "rescans": 0, "failed": 0}
        job.rows_total = _count_rows()
        return
    for key in old:
        key.active = False
        key.save(update_fields=["active"])
        fresh = vault.create_data_key(org_id=key.organization_id)
        audit.record(
            org=key.organization,
            action="vault.data_key.replaced",
            target=fresh,
            details={"rotation": job.pk, "previous_key": key.pk, "new_key": fresh.pk},
        )


def _active_keys() -> dict[int, OrgDataKey]:
    return {k.organization_id: k for k in OrgDataKey.objects.filter(active=True)}


def _reencrypt_batch(job: VaultRotation) -> None:
    fields = vault.encrypted_fields()
    cursor = dict(job.cursor or {})
    index, after = int(cursor.get("field", 0)), int(cursor.get("after", 0))
    if index >= len(fields):
        job.phase = "finish"
        return
    entry = fields[index]
    model = apps.get_model(entry.model_label)
    org_attr = f"{entry.org_field}_id"
    rows = list(
        model._default_manager.select_for_update(of=("self",))
        .filter(pk__gt=after)
        .exclude(Q(**{entry.field: ""}) | Q(**{f"{entry.field}__isnull": True}))
        .order_by("pk")
        .only("pk", entry.field, entry.uid_field, entry.org_field)[: _batch_size()]
    )
    active = _active_keys()
    for row in rows:
        blob = getattr(row, entry.field)
        org_id = getattr(row, org_attr)
        try:
            key_row = active.get(org_id)
            if key_row is not None and vault.blob_data_key_id(blob) == key_row.pk:
                continue
            row_uid = getattr(row, entry.uid_field)
            plain = vault.decrypt(org=org_id, purpose=entry.purpose, row_uid=row_uid, blob=blob)
            if key_row is None:
                fresh = vault.encrypt(
                    org=org_id, purpose=entry.purpose, row_uid=row_uid, plaintext=plain
                )
            else:
                fresh = vault.encrypt_with_key(
                    org_id=org_id,
                    purpose=entry.purpose,
                    row_uid=row_uid,
                    plaintext=plain,
                    key_row=key_row,
                )
        except VaultError as exc:
            # One unreadable blob must not block everyone's rotation: count it, name it in the
            # job (never its content) and carry on.
            cursor["failed"] = int(cursor.get("failed", 0)) + 1
            job.last_error = f"{entry.model_label} #{row.pk} {entry.field}: {exc.message}"[:500]
            continue
        model._default_manager.filter(pk=row.pk).update(**{entry.field: fresh})
    job.rows_done += len(rows)
    if len(rows) < _batch_size():
        cursor.update(field=index + 1, after=0)
    else:
        cursor["after"] = rows[-1].pk
    job.cursor = cursor


def _leftovers() -> int:
    """Blobs still under a non-active data key (a writer raced the scan, or unreadable)."""
    active = _active_keys()
    leftover = 0
    for entry in vault.encrypted_fields():
        model = apps.get_model(entry.model_label)
        org_attr = f"{entry.org_field}_id"
        rows = (
            model._default_manager.exclude(
                Q(**{entry.field: ""}) | Q(**{f"{entry.field}__isnull": True})
            )
            .values_list(entry.field, org_attr)
            .iterator(chunk_size=2000)
        )
        for blob, org_id in rows:
            try:
                key_row = active.get(org_id)
                if key_row is None or vault.blob_data_key_id(blob) != key_row.pk:
                    leftover += 1
            except VaultError:
                leftover += 1
    return leftover


def _finish(job: VaultRotation) -> None:
    cursor = dict(job.cursor or {})
    leftover = 0
    if job.reencrypt:
        leftover = _leftovers()
        if leftover and int(cursor.get("rescans", 0)) < MAX_RESCANS and not cursor.get("failed"):
            cursor.update(field=0, after=0, rescans=int(cursor.get("rescans", 0)) + 1)
            job.cursor = cursor
            job.phase = "reencrypt"
            return
        if not leftover:
            OrgDataKey.objects.filter(active=False, retired_at__isnull=True).update(
                retired_at=timezone.now()
            )
    job.phase = "done"
    job.status = RotationStatus.DONE
    job.finished_at = timezone.now()
    if leftover:
        job.last_error = (
            f"{leftover} secret(s) are still under an old data key "
            f"({job.last_error or 'written during the scan'}); run the rotation again."
        )[:500]
    audit.record(
        org=None,
        action="vault.rotation.finished",
        target=job,
        outcome="success" if not leftover else "failure",
        details={
            "target_master_key_id": job.target_master_key_id,
            "reencrypt": job.reencrypt,
            "keys_rewrapped": job.keys_done,
            "rows_reencrypted": job.rows_done,
            "leftover": leftover,
        },
    )
