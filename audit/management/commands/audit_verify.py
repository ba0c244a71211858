"""`manage.py audit_verify [--org SLUG]`: recompute the seal chains from the database and report
the first rows changed, removed, inserted into a sealed range or inserted out of order.
Exit status 0 when every chain verifies, 1 when a problem was found (usable from cron / CI)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.sealing import chains_with_events, verify_chain
from tenants.models import Organization


class Command(BaseCommand):
    help = "Verify the audit trail against its seal chain (exit 1 when tampering is found)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--org", help="Organization slug (default: every organization).")
        parser.add_argument(
            "--max-problems", type=int, default=20, help="Stop a chain after this many problems."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["org"]:
            org = Organization.objects.filter(slug=options["org"]).first()
            if org is None:
                raise CommandError(f"No organization with slug {options['org']!r}.")
            chains: list[int | None] = [org.id]
        else:
            chains = chains_with_events()
        slugs = dict(Organization.objects.values_list("id", "slug"))
        failed = False
        for org_id in chains:
            name = slugs.get(org_id, "(system events)") if org_id else "(system events)"
            report = verify_chain(org_id=org_id, max_problems=options["max_problems"])
            if report.ok:
                self.stdout.write(
                    self.style.SUCCESS(
                        f"OK   {name}: {report.seals} seals, {report.rows_checked} sealed rows "
                        f"verified, {report.unsealed_rows} not sealed yet"
                        + (
                            f", {len(report.purged_ranges)} retention purges"
                            if report.purged_ranges
                            else ""
                        )
                    )
                )
                continue
            failed = True
            self.stdout.write(self.style.ERROR(f"FAIL {name}: {len(report.problems)} problem(s)"))
            for problem in report.problems:
                self.stdout.write(f"  [{problem.kind}] {problem.message}")
        if failed:
            raise SystemExit(1)
