"""The race: two real Celery workers (Redis broker, Postgres) refresh the same 200 connections
whose refresh tokens rotate (public client). None may be lost, and the provider is called once
per expiry: a second use of a rotated refresh token would fail with invalid_grant (and
oidc-provider then revokes the whole grant), so both show up below."""

import time
import urllib.parse
import uuid
from datetime import timedelta

import httpx2
import pytest
from django.db import connection
from django.utils import timezone

from audit.models import AuditEvent
from credentials import services, vault
from credentials.models import Connection, ConnectionStatus
from tenants.models import Membership, User
from tests.credentials.workers import new_queue, sender, start_worker
from tests.peers.oidc import Pkce

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
N = 200


def _grants(oidc, n: int) -> list[dict]:
    """n independent token sets of one upstream account, by n authorization-code flows in one
    browser session (after the first login and consent, the provider answers at once).

    One account and one grant, for a reason beyond speed: oidc-provider keeps its state in an
    LRU of ~1000 entries, and a fresh login per flow (~8 entries) would evict the first grants
    before the race even starts. And a stricter race: reusing any rotated refresh token of a
    grant makes oidc-provider revoke the whole grant, so one double use fails all 200."""
    redirect_uri = oidc.public.redirect_uris[0]
    out = []
    with httpx2.Client(timeout=10.0, follow_redirects=False) as browser:
        for _ in range(n):
            pkce = Pkce.new()
            url = oidc.authorization_url(
                oidc.public, pkce=pkce, resource=oidc.resource, login_hint="racer"
            )
            for _hop in range(10):
                location = browser.get(url).headers["location"]
                url = urllib.parse.urljoin(url, location)
                if url.startswith(redirect_uri):
                    break
            response = oidc.exchange_code(
                oidc.public, url, code_verifier=pkce.verifier, redirect_uri=redirect_uri
            )
            response.raise_for_status()
            out.append(response.json())
    return out


def _settle(predicate, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    last, stable_since = None, time.monotonic()
    while time.monotonic() < deadline:
        value = predicate()
        if value != last:
            last, stable_since = value, time.monotonic()
        elif value[0] and time.monotonic() - stable_since > 2.0:
            return
        time.sleep(0.25)
    raise AssertionError(f"workers did not settle: {last}")


@pytest.mark.django_db(transaction=True)
def test_two_workers_refresh_200_rotating_connections_without_losing_one(
    oidc_provider_factory, org_a, alice, register_provider
):
    if connection.vendor != "postgresql":
        pytest.skip("the race needs real row locks: run with DATABASE_URL=postgres://...")
    # A provider of our own: oidc-provider keeps its state in a small LRU, so tokens that
    # earlier tests left behind would push ours out.
    oidc_provider = oidc_provider_factory()
    provider = register_provider(oidc_provider, org=org_a, actor=alice, public=True, slug="race")
    users = User.objects.bulk_create(
        [User(email=f"racer{i}@acme.test", password="!") for i in range(N)]
    )
    Membership.objects.bulk_create(
        [Membership(organization=org_a, user=u, role="member") for u in users]
    )
    grants = _grants(oidc_provider, N)
    assert len({g["refresh_token"] for g in grants}) == N
    rows = []
    soon = timezone.now() + timedelta(seconds=60)  # inside the refresh window: due
    for user, grant in zip(users, grants, strict=True):
        row = Connection(
            organization=org_a,
            user=user,
            provider=provider,
            expires_at=soon,
            scopes=grant.get("scope", ""),
            consent_client_id=provider.client_id,
        )
        row.access_token_blob = vault.encrypt(
            org=org_a,
            purpose=services.ACCESS_PURPOSE,
            row_uid=row.uid,
            plaintext=grant["access_token"],
        )
        row.refresh_token_blob = vault.encrypt(
            org=org_a,
            purpose=services.REFRESH_PURPOSE,
            row_uid=row.uid,
            plaintext=grant["refresh_token"],
        )
        rows.append(row)
    Connection.objects.bulk_create(rows)
    ids = list(Connection.objects.filter(provider=provider).values_list("pk", flat=True))

    queue = new_queue()
    workers = [start_worker(queue, "race-a"), start_worker(queue, "race-b")]
    try:
        app = sender()
        # Every connection is asked for twice (either worker may take either message), plus
        # the periodic sweep twice: plenty of chances to refresh one grant twice.
        for task_name in ("credentials.tasks.refresh_expiring_connections_task",) * 2:
            app.send_task(task_name, queue=queue)
        for connection_id in ids + ids:
            app.send_task(
                "credentials.tasks.refresh_connection_task", args=[connection_id], queue=queue
            )

        def progress():
            done = Connection.objects.filter(
                provider=provider, last_refreshed_at__isnull=False
            ).count()
            events = AuditEvent.objects.filter(action__startswith="connection.refresh").count()
            return (done == N, done, events)

        try:
            _settle(progress)
        except AssertionError as exc:
            failed = list(
                AuditEvent.objects.filter(action="connection.refresh_failed").values_list(
                    "details", flat=True
                )[:5]
            )
            from collections import Counter

            per_target = Counter(
                AuditEvent.objects.filter(action__startswith="connection.refresh").values_list(
                    "target_id", flat=True
                )
            )
            failed_targets = list(
                AuditEvent.objects.filter(action="connection.refresh_failed").values_list(
                    "target_id", flat=True
                )[:5]
            )
            history = [
                list(
                    AuditEvent.objects.filter(target_id=t)
                    .order_by("id")
                    .values_list("action", "occurred_at")
                )
                for t in failed_targets
            ]
            raise AssertionError(
                f"{exc}; distinct targets {len(per_target)}; failures: {failed}; "
                f"history: {history}; log: {workers[0].output()[-3000:]}"
            ) from None
    finally:
        outputs = [w.output() for w in workers]
        for w in workers:
            w.stop()
    assert all("Traceback" not in out for out in outputs), outputs[0][-3000:]
    assert all("succeeded" in out for out in outputs), "both workers must have worked"

    conns = list(Connection.objects.filter(provider=provider))
    assert len(conns) == N
    assert {c.status for c in conns} == {ConnectionStatus.ACTIVE}
    assert all(c.refresh_failures == 0 and not c.last_error for c in conns)
    refreshed = AuditEvent.objects.filter(action="connection.refreshed")
    assert refreshed.count() == N  # once per expiry
    assert len(set(refreshed.values_list("target_id", flat=True))) == N
    assert not AuditEvent.objects.filter(action="connection.refresh_failed").exists()

    # Every stored (rotated) refresh token still works: refresh them all once more.
    Connection.objects.filter(provider=provider).update(
        expires_at=timezone.now() + timedelta(seconds=30)
    )
    counts = services.refresh_due_connections(limit=N + 10)
    assert counts["refreshed"] == N, counts
    sample = Connection.objects.filter(provider=provider).order_by("?").first()
    token = services.access_token_for(user=sample.user, provider=provider)
    assert oidc_provider.introspect(token)["active"] is True
    assert uuid.UUID(str(sample.uid))
