"""Start, resume or watch a vault key rotation.

manage.py vault_new_master_key 2026-02          # print a new key; put it FIRST in the ring
manage.py vault_rotate                          # re-wrap every data key with it (Celery)
manage.py vault_rotate --reencrypt --wait       # also fresh data keys + re-encrypt all rows
manage.py vault_rotate --resume                 # after a worker died
manage.py vault_rotate --status
manage.py vault_rotate --sync                   # run in this process (no worker needed)
"""

import time

from django.core.management.base import BaseCommand, CommandError, CommandParser

from credentials import rotation, selectors
from credentials.errors import CredentialError
from credentials.models import RotationStatus, VaultRotation


class Command(BaseCommand):
    help = "Rotate the vault's master key (re-wrap data keys; optionally re-encrypt rows)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reencrypt", action="store_true", help="fresh data keys, re-encrypt rows"
        )
        parser.add_argument("--resume", action="store_true", help="re-enqueue the unfinished job")
        parser.add_argument("--status", action="store_true", help="show the latest job and exit")
        parser.add_argument(
            "--wait", action="store_true", help="poll and print progress until done"
        )
        parser.add_argument("--sync", action="store_true", help="run the job in this process")

    def handle(self, *args: object, **opts: bool) -> None:
        try:
            if opts["status"]:
                job = selectors.rotation_latest()
                if job is None:
                    self.stdout.write("No rotation has run yet.")
                    return
            elif opts["resume"]:
                job = rotation.rotation_resume(enqueue=not opts["sync"])
                self.stdout.write(f"Resuming rotation #{job.pk}.")
            else:
                job = rotation.rotation_start(reencrypt=opts["reencrypt"], enqueue=not opts["sync"])
                self.stdout.write(
                    f"Started rotation #{job.pk} to master key {job.target_master_key_id!r} "
                    f"({job.keys_total} data keys"
                    + (f", {job.rows_total} secrets to re-encrypt" if job.reencrypt else "")
                    + ")."
                )
        except CredentialError as exc:
            raise CommandError(exc.message) from exc
        if opts["sync"] and not opts["status"]:
            rotation.rotation_run(rotation_id=job.pk)
        if opts["wait"] or opts["sync"] or opts["status"]:
            self._watch(job.pk, follow=opts["wait"] or opts["sync"])

    def _watch(self, rotation_id: int, *, follow: bool) -> None:
        last = None
        while True:
            job = VaultRotation.objects.get(pk=rotation_id)
            line = (
                f"rotation #{job.pk} {job.status} phase={job.phase} {rotation.progress(job)}% "
                f"keys {job.keys_done}/{job.keys_total} rows {job.rows_done}/{job.rows_total}"
            )
            if line != last:
                self.stdout.write(line)
                if job.last_error:
                    self.stdout.write(f"  note: {job.last_error}")
                last = line
            if not follow or job.status in (RotationStatus.DONE, RotationStatus.FAILED):
                if job.status == RotationStatus.FAILED:
                    raise CommandError(f"Rotation #{job.pk} failed: {job.last_error}")
                return
            time.sleep(1.0)
