"""createagent --org <slug> <agent-slug> [--name ...] [--acting-for email] [--key]"""

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from tenants import services
from tenants.errors import DomainError
from tenants.models import Membership, Organization, User
from tenants.permissions import Role


class Command(BaseCommand):
    help = "Create an agent in an organization, optionally with an API key (printed once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="The agent's slug: daily-triage")
        parser.add_argument("--org", required=True, help="Slug of the organization")
        parser.add_argument("--name", help="Display name (default: the slug)")
        parser.add_argument("--acting-for", help="Email of the member the agent acts for")
        parser.add_argument(
            "--actor",
            help="Email of the member recorded as creating it (default: the org's first owner)",
        )
        parser.add_argument("--key", action="store_true", help="Also issue an API key")
        parser.add_argument(
            "--expires-in-days",
            type=int,
            default=settings.AGENT_KEY_DEFAULT_TTL_DAYS,
            help=f"Key lifetime (default {settings.AGENT_KEY_DEFAULT_TTL_DAYS} days)",
        )

    def _member(self, org: Organization, email: str, what: str) -> User:
        user = User.objects.filter(
            email__iexact=email.strip(), memberships__organization=org
        ).first()
        if user is None:
            raise CommandError(f"{what}: {email} is not a member of {org.slug}.")
        return user

    def handle(self, *args: Any, **options: Any) -> None:
        org = Organization.objects.filter(slug=options["org"]).first()
        if org is None:
            raise CommandError(f"There is no organization with the slug '{options['org']}'.")
        if options["actor"]:
            actor = self._member(org, options["actor"], "--actor")
        else:
            owner = (
                Membership.objects.for_org(org)
                .filter(role=Role.OWNER)
                .select_related("user")
                .order_by("created_at", "pk")
                .first()
            )
            if owner is None:
                raise CommandError(f"{org.slug} has no owner: pass --actor.")
            actor = owner.user
        acting_for = (
            self._member(org, options["acting_for"], "--acting-for")
            if options["acting_for"]
            else None
        )
        try:
            with transaction.atomic():
                agent = services.agent_create(
                    org=org,
                    actor=actor,
                    name=options["name"] or options["slug"],
                    slug=options["slug"],
                    acting_for=acting_for,
                )
                plaintext = None
                if options["key"]:
                    _, plaintext = services.agent_key_create(
                        org=org,
                        actor=actor,
                        agent=agent,
                        name="createagent",
                        expires_in_days=options["expires_in_days"],
                    )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc

        self.stdout.write(self.style.SUCCESS(f"Created agent {agent.slug} in {org.slug}."))
        if plaintext:
            self.stdout.write(f"API key (shown once, store it now): {plaintext}")
            self.stdout.write(f"MCP endpoint: {settings.SITE_URL}/mcp/{org.slug}/")
            self.stdout.write(f"Header: Authorization: Bearer {plaintext}")
