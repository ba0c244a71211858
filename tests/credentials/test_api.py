"""The credentials REST API: admins manage providers, members see and drop their own grants;
no secret ever comes back."""

import logging

import pytest

from audit.models import AuditEvent
from credentials import services, vault
from credentials.models import Connection, OAuthProvider

BODY = {
    "name": "Jira",
    "authorization_endpoint": "https://auth.example.test/authorize",
    "token_endpoint": "https://auth.example.test/token",
    "client_id": "gw",
    "client_secret": "api-client-secret-value",
    "scopes": "read",
}


def test_admin_creates_and_patches_a_provider_without_the_secret_coming_back(org_a, alice, api_as):
    api = api_as(alice)
    response = api.post(f"/api/v1/orgs/{org_a.slug}/oauth-providers/", BODY, format="json")
    assert response.status_code == 201, response.content
    assert b"api-client-secret-value" not in response.content
    assert response.json()["confidential_client"] is True and response.json()["slug"] == "jira"
    pk = response.json()["id"]
    response = api.patch(
        f"/api/v1/orgs/{org_a.slug}/oauth-providers/{pk}/", {"scopes": "read write"}, format="json"
    )
    assert response.status_code == 200 and response.json()["scopes"] == "read write"
    provider = OAuthProvider.objects.get(pk=pk)
    assert services.provider_client(provider).client_secret == "api-client-secret-value"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**BODY, "client_secret_blob": "x"}, "client_secret_blob"),
        (
            {
                **BODY,
                "authorization_endpoint": "https://93.184.215.14/authorize",
                "token_endpoint": "https://10.0.0.1/t",
            },
            "token_endpoint",
        ),
        ({**BODY, "client_id": ""}, "client_id"),
        ({k: v for k, v in BODY.items() if k != "client_secret"}, "client_secret"),
    ],
)
def test_bad_api_input_is_a_400_with_the_field_and_changes_nothing(
    org_a, alice, api_as, row_counts, settings, body, field
):
    settings.CREDENTIALS_ALLOW_PRIVATE_URLS = field != "token_endpoint"
    api = api_as(alice)
    before = row_counts()
    response = api.post(f"/api/v1/orgs/{org_a.slug}/oauth-providers/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.content.decode()
    assert row_counts() == before


def test_members_cannot_create_providers_and_strangers_see_nothing(
    org_a, bob, charlie, api_as, row_counts
):
    bob_api, charlie_api = api_as(bob), api_as(charlie)
    before = row_counts()
    url = f"/api/v1/orgs/{org_a.slug}/oauth-providers/"
    assert bob_api.post(url, BODY, format="json").status_code == 403
    assert charlie_api.get(url).status_code == 404
    assert row_counts() == before


@pytest.mark.e2e
def test_member_lists_and_disconnects_own_connection_through_the_api(
    oidc_provider, connected, org_a, alice, bob, api_as
):
    provider, conn = connected(user=bob)
    connected(user=alice)
    token = services.access_token_for(user=bob, provider=provider)
    api = api_as(bob)
    listing = api.get(f"/api/v1/orgs/{org_a.slug}/connections/")
    assert listing.status_code == 200
    rows = listing.json()["results"]
    assert [r["id"] for r in rows] == [conn.pk]  # only bob's own
    assert token not in listing.content.decode() and "v1:" not in listing.content.decode()
    alice_conn = Connection.objects.get(user=alice)
    assert api.delete(f"/api/v1/orgs/{org_a.slug}/connections/{alice_conn.pk}/").status_code == 404
    assert api.delete(f"/api/v1/orgs/{org_a.slug}/connections/{conn.pk}/").status_code == 204
    assert oidc_provider.introspect(token)["active"] is False
    assert Connection.objects.filter(user=alice).exists()


@pytest.mark.e2e
def test_no_token_or_client_secret_in_logs_audit_or_errors(
    oidc_provider, connected, org_a, alice, client_as, caplog
):
    caplog.set_level(logging.DEBUG)
    provider, conn = connected()
    access = services.access_token_for(user=alice, provider=provider)
    refresh = vault.decrypt(
        org=org_a, purpose=services.REFRESH_PURPOSE, row_uid=conn.uid, blob=conn.refresh_token_blob
    )
    Connection.objects.filter(pk=conn.pk).update(expires_at=conn.created_at)
    new_access = services.access_token_for(user=alice, provider=provider)  # inline refresh
    conn.refresh_from_db()
    new_refresh = vault.decrypt(
        org=org_a, purpose=services.REFRESH_PURPOSE, row_uid=conn.uid, blob=conn.refresh_token_blob
    )
    # A failing exchange and a broken blob: their messages must not carry secrets either.
    errors = []
    Connection.objects.filter(pk=conn.pk).update(access_token_blob=conn.refresh_token_blob)
    conn.refresh_from_db()
    try:
        services._decrypt_access(conn)
    except vault.VaultError as exc:
        errors.append(repr(exc) + str(exc))
    client_as(alice).post(f"/o/{org_a.slug}/connections/{conn.pk}/disconnect/")
    secrets = [access, refresh, new_access, new_refresh, oidc_provider.confidential.client_secret]
    haystacks = {
        "logs": caplog.text,
        "audit": " ".join(str(e.details) for e in AuditEvent.objects.all()),
        "errors": " ".join(errors),
        "repr": repr(services.provider_client(provider)),
    }
    assert errors
    for where, text in haystacks.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {where}"
