"""policy_apply --org <slug> <file.yaml|-> [--dry-run] [--prune] [--actor email]"""

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from policies.document import MAX_DOCUMENT_BYTES
from policies.models import RevisionSource
from policies.services import policy_apply
from tenants.errors import DomainError
from tenants.models import Organization, User


class Command(BaseCommand):
    help = (
        "Validate a policy YAML document, show its diff against what is live, and apply it "
        "atomically (nothing is applied when there is any error). Exit status 1 on errors."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="The YAML file, or - for standard input")
        parser.add_argument("--org", required=True, help="Slug of the organization")
        parser.add_argument("--dry-run", action="store_true", help="Validate and diff only")
        parser.add_argument(
            "--prune",
            action="store_true",
            help="Also delete the policies and tool groups the file does not name",
        )
        parser.add_argument(
            "--actor",
            help="Email of the member recorded as applying it (needs edit_policy); "
            "default: recorded as the command line, with no person",
        )

    def _read(self, name: str) -> bytes:
        if name == "-":
            data = sys.stdin.buffer.read(MAX_DOCUMENT_BYTES + 1)
        else:
            path = Path(name)
            if not path.is_file():
                raise CommandError(f"{name}: no such file.")
            with path.open("rb") as handle:
                data = handle.read(MAX_DOCUMENT_BYTES + 1)
        return data  # parse_document refuses what is over the limit, with the size

    def handle(self, *args: Any, **options: Any) -> None:
        org = Organization.objects.filter(slug=options["org"]).first()
        if org is None:
            raise CommandError(f"There is no organization with the slug '{options['org']}'.")
        actor = None
        if options["actor"]:
            actor = User.objects.filter(email__iexact=options["actor"].strip()).first()
            if actor is None:
                raise CommandError(f"--actor: there is no user {options['actor']}.")
        try:
            result = policy_apply(
                org=org,
                actor=actor,
                text=self._read(options["file"]),
                dry_run=options["dry_run"],
                prune=options["prune"],
                source=RevisionSource.CLI,
            )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        for line in result.diff:
            self.stdout.write(line)
        for warning in result.warnings:
            self.stderr.write(f"{options['file']}: {warning}")
        if result.errors:
            for error in result.errors:
                self.stderr.write(f"{options['file']}: {error}")
            raise CommandError(f"{len(result.errors)} error(s): nothing was applied.")
        if result.dry_run:
            summary = f"{len(result.diff)} change(s); dry run: nothing was applied."
        elif result.changes:
            summary = "Applied: " + ", ".join(result.changes) + "."
        else:
            summary = "Nothing to change: the organization already has this."
        self.stdout.write(self.style.SUCCESS(summary))
