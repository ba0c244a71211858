"""Real Celery worker processes for credentials tests (Redis broker, the test's Postgres DB)."""

import os
import secrets
from pathlib import Path

from django.db import connection

from tests.peers.process import ChildProcess

ROOT = Path(__file__).resolve().parents[2]
BROKER_URL = os.environ.get("CREDENTIALS_TEST_BROKER", "redis://127.0.0.1:6379/2")


def test_database_url() -> str:
    s = connection.settings_dict
    user = s.get("USER") or "postgres"
    auth = f"{user}:{s['PASSWORD']}" if s.get("PASSWORD") else user
    return f"postgres://{auth}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


def new_queue() -> str:
    """A queue of our own, so no teammate's worker on the same Redis takes our messages."""
    return f"credentials-test-{secrets.token_hex(4)}"


def start_worker(queue: str, name: str, *, concurrency: int = 2, **env: str) -> ChildProcess:
    environ = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "CELERY_BROKER_URL": BROKER_URL,
        "CREDENTIALS_ALLOW_PRIVATE_URLS": "true",
        "DB_CONN_MAX_AGE": "0",
        **env,
    }
    child = ChildProcess(
        [
            str(ROOT / ".venv/bin/celery"),
            "-A",
            "config",
            "worker",
            "-Q",
            queue,
            "-n",
            f"{name}-{queue}@%h",
            "-c",
            str(concurrency),
            "--pool",
            "prefork",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "info",
        ],
        env=environ,
        cwd=ROOT,
        name=name,
    )
    child.wait_ready(line=r"ready\.", timeout=60)
    return child


def sender():
    from celery import Celery

    return Celery("credentials-tests", broker=BROKER_URL)
