"""Keeping grants alive: the worker's refresh, the gateway's inline refresh, rotation of refresh
tokens, and what happens when the provider says no (invalid_grant) or is down (retry, keep)."""

import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from credentials import services, vault
from credentials.errors import ConsentRequired, CredentialError
from credentials.models import Connection, ConnectionStatus

pytestmark = pytest.mark.e2e


def _refresh_token(conn: Connection) -> str:
    return vault.decrypt(
        org=conn.organization_id,
        purpose=services.REFRESH_PURPOSE,
        row_uid=conn.uid,
        blob=conn.refresh_token_blob,
    )


def _make_due(conn: Connection, *, seconds: int = 60) -> None:
    Connection.objects.filter(pk=conn.pk).update(
        expires_at=timezone.now() + timedelta(seconds=seconds)
    )


def test_worker_refreshes_expiring_connections_once(oidc_provider, connected):
    provider, conn = connected()
    old_token = services.access_token_for(user=conn.user, provider=provider)
    _make_due(conn)

    counts = services.refresh_due_connections()
    assert counts["refreshed"] == 1
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.ACTIVE
    assert conn.expires_at > timezone.now() + timedelta(minutes=30)
    new_token = services.access_token_for(user=conn.user, provider=provider)
    assert new_token != old_token
    assert oidc_provider.introspect(new_token)["active"] is True

    # Not due any more: a second pass does not call the provider.
    assert services.refresh_due_connections()["due"] == 0
    assert AuditEvent.objects.filter(action="connection.refreshed").count() == 1


def test_rotated_refresh_token_is_stored_and_works_next_time(oidc_provider, connected):
    _provider, conn = connected(public=True, slug="public")
    first_rt = _refresh_token(conn)
    _make_due(conn)
    services.refresh_due_connections()
    conn.refresh_from_db()
    second_rt = _refresh_token(conn)
    assert second_rt != first_rt  # the public client's refresh token rotated
    _make_due(conn)
    assert services.refresh_due_connections()["refreshed"] == 1  # the stored one works
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.ACTIVE and _refresh_token(conn) != second_rt


def test_gateway_refreshes_an_expired_token_inline(oidc_provider, connected):
    provider, conn = connected()
    old = services.access_token_for(user=conn.user, provider=provider)
    Connection.objects.filter(pk=conn.pk).update(expires_at=timezone.now() - timedelta(seconds=5))
    token = services.access_token_for(user=conn.user, provider=provider)
    assert token != old and oidc_provider.introspect(token)["active"] is True
    event = AuditEvent.objects.get(action="connection.refreshed")
    assert event.details["inline"] is True


def test_invalid_grant_asks_the_user_to_reconnect_and_keeps_the_row(
    oidc_provider, connected, client_as, org_a
):
    provider, conn = connected()
    oidc_provider.revoke(oidc_provider.confidential, _refresh_token(conn))  # grant gone upstream
    _make_due(conn, seconds=-5)

    services.refresh_due_connections()
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.NEEDS_RECONSENT
    assert "invalid_grant" in conn.last_error
    with pytest.raises(ConsentRequired) as info:
        services.access_token_for(user=conn.user, provider=provider)
    assert "/connect/" in info.value.consent_url
    page = client_as(conn.user).get(f"/o/{org_a.slug}/connections/")
    assert b"needs re-consent" in page.content and b"Reconnect" in page.content
    dashboard = client_as(conn.user).get(f"/o/{org_a.slug}/")
    assert b"need" in dashboard.content and b"Reconnect" in dashboard.content


class _Unavailable(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error":"temporarily_unavailable"}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def down_token_endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/token"
    server.shutdown()


@pytest.mark.parametrize("failure", ["http_503", "connection_refused"])
def test_provider_down_retries_with_backoff_and_deletes_nothing(
    oidc_provider, connected, down_token_endpoint, failure
):
    provider, conn = connected()
    blobs = (conn.access_token_blob, conn.refresh_token_blob)
    token_endpoint = provider.token_endpoint
    broken = down_token_endpoint if failure == "http_503" else "http://127.0.0.1:9/token"
    type(provider).objects.filter(pk=provider.pk).update(token_endpoint=broken)
    _make_due(conn, seconds=-5)  # expired, so the gateway cannot fall back on it

    services.refresh_due_connections()
    conn.refresh_from_db()
    assert (conn.access_token_blob, conn.refresh_token_blob) == blobs
    assert conn.status == ConnectionStatus.ERROR and conn.refresh_failures == 1
    assert conn.next_attempt_at > timezone.now()
    with pytest.raises(CredentialError) as info:
        services.access_token_for(user=conn.user, provider=provider)
    assert not isinstance(info.value, ConsentRequired)
    assert services.refresh_due_connections()["due"] == 0  # backing off, no hammering

    # The provider is back: the next attempt succeeds with the kept refresh token.
    type(provider).objects.filter(pk=provider.pk).update(token_endpoint=token_endpoint)
    Connection.objects.filter(pk=conn.pk).update(next_attempt_at=timezone.now())
    assert services.refresh_due_connections()["refreshed"] == 1
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.ACTIVE and conn.refresh_failures == 0
    token = services.access_token_for(user=conn.user, provider=provider)
    assert oidc_provider.introspect(token)["active"] is True
