"""`manage.py audit_seal [--org SLUG]`: seal new rows now (the beat task does this periodically)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.sealing import chains_with_events, seal_chain
from tenants.models import Organization


class Command(BaseCommand):
    help = "Seal audit rows that are not sealed yet (older than AUDIT_SEAL_LAG_SECONDS)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--org", help="Organization slug (default: every organization).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["org"]:
            org = Organization.objects.filter(slug=options["org"]).first()
            if org is None:
                raise CommandError(f"No organization with slug {options['org']!r}.")
            chains: list[int | None] = [org.id]
        else:
            chains = chains_with_events()
        total = 0
        for org_id in chains:
            while sealed := seal_chain(org_id=org_id):
                total += sealed
        self.stdout.write(f"Sealed {total} rows.")
