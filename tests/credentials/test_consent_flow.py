"""The member's journey with a real OAuth server (oidc-provider on loopback): connect, consent,
callback, and everything that must fail closed on the way."""

import urllib.parse

import pytest
from django.db import connection as db_connection

from audit.models import AuditEvent
from credentials import services, vault
from credentials.models import Connection, ConnectionStatus, PendingAuthorization
from tests.credentials.conftest import callback_path, start_connect

pytestmark = pytest.mark.e2e


def test_member_connects_and_the_gateway_gets_a_working_token(
    oidc_provider, org_a, alice, bob, client_as, register_provider, connect_via_browser
):
    provider = register_provider(oidc_provider, org=org_a, actor=alice)
    assert provider.token_endpoint == oidc_provider.metadata["token_endpoint"]  # discovered
    client = client_as(bob)

    page = client.get(f"/o/{org_a.slug}/connections/providers/{provider.pk}/connect/")
    assert page.status_code == 200
    assert b"gateway-confidential" in page.content and b"tickets:read" in page.content

    authorize_url = start_connect(client, org_a, provider)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(authorize_url).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert query["resource"] == [oidc_provider.resource]
    assert query["redirect_uri"] == ["http://127.0.0.1:8000/oauth/callback"]

    callback = oidc_provider.authorize(authorize_url, services.redirect_uri(), account="bob")
    assert "iss=" in callback  # RFC 9207: the provider names itself, and we check it
    response = client.get(callback_path(callback))
    assert response.status_code == 302
    assert response["Location"] == f"/o/{org_a.slug}/connections/"

    conn = Connection.objects.get(user=bob, provider=provider)
    assert conn.status == ConnectionStatus.ACTIVE
    assert conn.consent_client_id == "gateway-confidential"
    assert conn.consent_scopes == "tickets:read chat:write"
    assert conn.refresh_token_blob and conn.expires_at
    assert not PendingAuthorization.objects.exists()  # single use, cleaned up

    token = services.access_token_for(user=bob, provider=provider)
    info = oidc_provider.introspect(token)
    assert info["active"] is True and info["sub"] == "bob"
    assert "tickets:read" in info["scope"]
    created = AuditEvent.objects.get(action="connection.created")
    assert created.details["granted_scopes"] and token not in str(created.details)

    listing = client.get(f"/o/{org_a.slug}/connections/")
    assert b"connected" in listing.content and b"Disconnect" in listing.content


def test_disconnect_revokes_at_the_provider_and_leaves_other_users_alone(
    oidc_provider, org_a, alice, bob, client_as, register_provider, connect_via_browser
):
    provider = register_provider(oidc_provider, org=org_a, actor=alice)
    connect_via_browser(client_as(alice), org_a, provider, oidc_provider, account="alice")
    connect_via_browser(client_as(bob), org_a, provider, oidc_provider, account="bob")
    alice_token = services.access_token_for(user=alice, provider=provider)
    bob_token = services.access_token_for(user=bob, provider=provider)
    bob_conn = Connection.objects.get(user=bob)
    bob_refresh = vault.decrypt(
        org=org_a,
        purpose=services.REFRESH_PURPOSE,
        row_uid=bob_conn.uid,
        blob=bob_conn.refresh_token_blob,
    )

    response = client_as(bob).post(f"/o/{org_a.slug}/connections/{bob_conn.pk}/disconnect/")
    assert response.status_code == 302

    assert not Connection.objects.filter(user=bob).exists()
    assert oidc_provider.introspect(bob_token)["active"] is False
    assert oidc_provider.introspect(bob_refresh)["active"] is False
    assert oidc_provider.introspect(alice_token)["active"] is True
    assert services.access_token_for(user=alice, provider=provider) == alice_token
    deleted = AuditEvent.objects.get(action="connection.deleted")
    assert deleted.details["revoked_at_provider"] is True
    assert AuditEvent.objects.filter(action="connection.revoke_requested").count() == 1
    with pytest.raises(services.ConsentRequired) as info:
        services.access_token_for(user=bob, provider=provider)
    assert info.value.consent_url.endswith(f"/connections/providers/{provider.pk}/connect/")


def test_bob_cannot_disconnect_alices_connection(
    oidc_provider, org_a, alice, bob, client_as, register_provider, connect_via_browser
):
    provider = register_provider(oidc_provider, org=org_a, actor=alice)
    connect_via_browser(client_as(alice), org_a, provider, oidc_provider, account="alice")
    conn = Connection.objects.get(user=alice)
    response = client_as(bob).post(f"/o/{org_a.slug}/connections/{conn.pk}/disconnect/")
    assert response.status_code == 404
    assert Connection.objects.get(pk=conn.pk).status == ConnectionStatus.ACTIVE


def _flow_fails(client, path, row_counts, message: bytes, *, code: str | None = None):
    before = {k: v for k, v in row_counts().items() if k != "audit.AuditEvent"}
    response = client.get(path)
    assert response.status_code == 400
    assert message in response.content
    after = {k: v for k, v in row_counts().items() if k != "audit.AuditEvent"}
    assert before == after
    assert not Connection.objects.exists()
    if code:
        assert AuditEvent.objects.filter(
            action="connection.consent_failed", details__reason=code
        ).exists()


def test_missing_unknown_and_replayed_state_store_nothing(
    oidc_provider, org_a, alice, client_as, register_provider, row_counts
):
    provider = register_provider(oidc_provider, org=org_a, actor=alice)
    client = client_as(alice)
    _flow_fails(client, "/oauth/callback?code=abc", row_counts, b"without a valid state")
    _flow_fails(client, "/oauth/callback?code=abc&state=forged", row_counts, b"unknown")

    callback = oidc_provider.authorize(
        start_connect(client, org_a, provider), services.redirect_uri()
    )
    parts = urllib.parse.parse_qs(urllib.parse.urlsplit(callback).query)
    # First use with a wrong code consumes the state...
    bad = f"/oauth/callback?state={parts['state'][0]}&code=not-the-code&iss={parts['iss'][0]}"
    _flow_fails(client, bad, row_counts, b"refused", code="exchange_failed")
    # ...so the real code cannot be replayed with it.
    _flow_fails(client, callback_path(callback), row_counts, b"already used", code="replayed_state")


def test_state_from_another_user_or_session_or_too_old_is_refused(
    oidc_provider, org_a, alice, bob, client_as, register_provider, row_counts
):
    provider = register_provider(oidc_provider, org=org_a, actor=alice)
    # Another user presents alice's callback.
    callback = oidc_provider.authorize(
        start_connect(client_as(alice), org_a, provider), services.redirect_uri()
    )
    _flow_fails(
        client_as(bob), callback_path(callback), row_counts, b"another user", code="other_user"
    )

    # Same user, another browser session.
    callback = oidc_provider.authorize(
        start_connect(client_as(alice), org_a, provider), services.redirect_uri()
    )
    _flow_fails(
        client_as(alice),
        callback_path(callback),
        row_counts,
        b"another browser",
        code="other_session",
    )

    # Expired.
    client = client_as(alice)
    callback = oidc_provider.authorize(
        start_connect(client, org_a, provider), services.redirect_uri()
    )
    PendingAuthorization.objects.update(expires_at=PendingAuthorization.objects.first().created_at)
    _flow_fails(client, callback_path(callback), row_counts, b"expired", code="expired_state")


def test_denied_consent_and_issuer_mix_up_store_nothing(
    oidc_provider, org_a, alice, client_as, register_provider, row_counts
):
    provider = register_provider(oidc_provider, org=org_a, actor=alice)
    client = client_as(alice)
    callback = oidc_provider.authorize(
        start_connect(client, org_a, provider), services.redirect_uri(), account="deny"
    )
    assert "error=access_denied" in callback
    _flow_fails(client, callback_path(callback), row_counts, b"declined", code="access_denied")

    callback = oidc_provider.authorize(
        start_connect(client, org_a, provider), services.redirect_uri()
    )
    mixed = callback.replace(
        urllib.parse.quote(oidc_provider.issuer, safe=""),
        urllib.parse.quote("https://evil.example", safe=""),
    )
    assert mixed != callback
    _flow_fails(
        client, callback_path(mixed), row_counts, b"issuer mismatch", code="issuer_mismatch"
    )


def test_no_secret_in_clear_in_the_database(
    oidc_provider, org_a, alice, client_as, register_provider, connect_via_browser
):
    provider = register_provider(oidc_provider, org=org_a, actor=alice)
    connect_via_browser(client_as(alice), org_a, provider, oidc_provider, account="alice")
    conn = Connection.objects.get(user=alice)
    secrets = [
        services.access_token_for(user=alice, provider=provider),
        vault.decrypt(
            org=org_a,
            purpose=services.REFRESH_PURPOSE,
            row_uid=conn.uid,
            blob=conn.refresh_token_blob,
        ),
        oidc_provider.confidential.client_secret,
    ]
    dump = []
    with db_connection.cursor() as cursor:
        for table in db_connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')
            dump.extend(repr(row) for row in cursor.fetchall())
    text = "\n".join(dump)
    for secret in secrets:
        assert secret and secret not in text
