"""policy_export --org <slug> [--output file.yaml]"""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from policies.services import policy_export
from tenants.models import Organization


class Command(BaseCommand):
    help = (
        "Print an organization's tool groups and policies as one YAML document (what "
        "policy_apply takes back unchanged)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="Slug of the organization")
        parser.add_argument("--output", "-o", help="Write to this file instead of stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        org = Organization.objects.filter(slug=options["org"]).first()
        if org is None:
            raise CommandError(f"There is no organization with the slug '{options['org']}'.")
        text = policy_export(org=org)
        if options["output"]:
            Path(options["output"]).write_text(text, encoding="utf-8")
        else:
            self.stdout.write(text, ending="")
