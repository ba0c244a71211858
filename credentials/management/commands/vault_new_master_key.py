"""Print a fresh master key entry for VAULT_MASTER_KEYS (put it first to start a rotation)."""

from django.core.management.base import BaseCommand, CommandParser

from credentials.vault import new_master_key_entry


class Command(BaseCommand):
    help = "Print a new 'id:base64key' entry for VAULT_MASTER_KEYS (32 random bytes)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key_id", help="a name for the key, e.g. 2026-01")

    def handle(self, *args: object, key_id: str, **options: object) -> None:
        try:
            entry = new_master_key_entry(key_id)
        except ValueError as exc:
            self.stderr.write(f"Invalid key id: {exc}")
            raise SystemExit(2) from exc
        self.stdout.write(entry)
