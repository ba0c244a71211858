"""Seed (or refresh) the demo organization and print a JSON summary: URL, logins, agent key."""

import importlib
import json
import secrets

from django.core.management.base import BaseCommand
from django.db import transaction

from demo.seed import STEPS, DemoContext
from tenants.models import User


def _reset_password(email: str) -> str:
    user = User.objects.get(email=email)
    password = secrets.token_urlsafe(12)
    user.set_password(password)
    user.save(update_fields=["password"])
    return password


class Command(BaseCommand):
    help = "Create the demo organization, users, agent and key (idempotent); print a JSON summary."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument(
            "--reset-passwords",
            "--reset-admin-password",
            dest="reset_passwords",
            action="store_true",
            help="Give every demo person a new password and print it (a password is only printed "
            "when it is set, so the trial run resets them on each start).",
        )

    def handle(self, *args: object, **options: object) -> None:
        ctx = DemoContext()
        with transaction.atomic():
            for module_name in STEPS:
                importlib.import_module(module_name).seed(ctx)
            if options["reset_passwords"]:
                for person in ctx.summary.values():
                    if isinstance(person, dict) and {"email", "password"} <= set(person):
                        person["password"] = _reset_password(person["email"])
        self.stdout.write(json.dumps(ctx.summary, indent=2))
