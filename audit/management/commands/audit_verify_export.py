"""`manage.py audit_verify_export manifest.json export.jsonl [--db]`

Offline (no database needed): the file's SHA-256, its row count and first / last event ids match
the manifest, ids strictly increase, and every row lies inside the organization and the filters'
id bound. With --db it also checks each JSON Lines row against the seal chain of this deployment
(the row's canonical hash equals the digest sealed for that id). Exit status 1 on any mismatch.
The same offline checks run without Django: `python audit/verify_export.py manifest.json file`.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.verify_export import verify_against_seals, verify_file


class Command(BaseCommand):
    help = "Verify an audit export against its manifest (and, with --db, the seal chain)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("manifest")
        parser.add_argument("export")
        parser.add_argument("--db", action="store_true", help="Also check rows against the seals.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            problems, manifest = verify_file(options["manifest"], options["export"])
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        if not problems and options["db"]:
            problems = verify_against_seals(manifest, options["export"])
        if problems:
            for problem in problems:
                self.stdout.write(self.style.ERROR(problem))
            raise SystemExit(1)
        self.stdout.write(
            self.style.SUCCESS(
                f"OK: {manifest['event_count']} rows, events {manifest['first_event_id']}-"
                f"{manifest['last_event_id']}, sha256 {manifest['sha256']}"
                + (" , every row matches its seal" if options["db"] else "")
            )
        )
