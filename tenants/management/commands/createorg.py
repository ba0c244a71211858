"""createorg <slug> --name "Acme" --owner-email ops@acme.test [--owner-password ...]"""

import secrets
from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email
from django.db import transaction

from tenants import services
from tenants.errors import DomainError
from tenants.models import User


class Command(BaseCommand):
    help = (
        "Create an organization with an owner. The owner's account is created when missing "
        "(with the given password, or a generated one that is printed once)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="URL name of the organization: acme, acme-eu")
        parser.add_argument("--name", help="Display name (default: the slug)")
        parser.add_argument("--owner-email", required=True, help="Email of the first owner")
        parser.add_argument(
            "--owner-password",
            help="Password for a new owner account (ignored when the account exists)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        slug: str = options["slug"]
        name: str = options["name"] or slug
        email = (options["owner_email"] or "").strip().lower()
        password: str | None = options["owner_password"]
        try:
            validate_email(email)
        except ValidationError as exc:
            raise CommandError(f"'{email}' is not a valid email address.") from exc

        generated = False
        with transaction.atomic():
            owner = User.objects.filter(email__iexact=email).first()
            if owner is None:
                if password is None:
                    password, generated = secrets.token_urlsafe(18), True
                candidate = User(email=email)
                try:
                    validate_password(password, candidate)
                except ValidationError as exc:
                    raise CommandError("Password refused: " + " ".join(exc.messages)) from exc
                owner = User.objects.create_user(email=email, password=password)
                self.stdout.write(f"Created the user {email}.")
            elif password is not None:
                self.stderr.write(f"{email} exists already: its password was left unchanged.")
            try:
                org = services.org_create(name=name, slug=slug, owner=owner)
            except DomainError as exc:
                raise CommandError(exc.message) from exc
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from exc

        self.stdout.write(self.style.SUCCESS(f"Created {org.name} ({org.slug}), owner {email}."))
        if generated:
            self.stdout.write(f"Password for {email} (shown once): {password}")
