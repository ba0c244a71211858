"""Seed (or refresh) the demo organization and print a JSON summary: URL, logins, agent key."""

import importlib
import json

from django.core.management.base import BaseCommand
from django.db import transaction

from demo.seed import STEPS, DemoContext


class Command(BaseCommand):
    help = "Create the demo organization, users, agent and key (idempotent); print a JSON summary."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument(
            "--reset-admin-password",
            action="store_true",
            help="Give the demo admin a new password and print it (it is only printed when set).",
        )

    def handle(self, *args: object, **options: object) -> None:
        ctx = DemoContext()
        with transaction.atomic():
            for module_name in STEPS:
                importlib.import_module(module_name).seed(ctx)
            if options["reset_admin_password"]:
                import secrets

                password = secrets.token_urlsafe(12)
                ctx.admin.set_password(password)
                ctx.admin.save(update_fields=["password"])
                ctx.summary["admin"]["password"] = password
        self.stdout.write(json.dumps(ctx.summary, indent=2))
