"""Admins register OAuth providers; bad input and unsafe URLs change nothing."""

import pytest

from audit.models import AuditEvent
from credentials import services, vault
from credentials.egress import check_url
from credentials.errors import UnsafeURLError
from credentials.models import ConnectionStatus, OAuthProvider
from tenants.errors import PermissionDeniedError


def _form(**overrides):
    data = {
        "name": "Jira",
        "slug": "jira",
        "authorization_endpoint": "https://auth.example.test/authorize",
        "token_endpoint": "https://auth.example.test/token",
        "client_id": "gw",
        "client_secret": "s3cr3t-client-secret-value",
        "token_endpoint_auth_method": "client_secret_basic",
        "scopes": "read write",
        "pkce_required": "on",
    }
    data.update(overrides)
    return data


def test_admin_registers_a_provider_with_explicit_endpoints_secret_encrypted(
    org_a, alice, client_as
):
    response = client_as(alice).post(f"/o/{org_a.slug}/providers/new/", _form())
    assert response.status_code == 302
    provider = OAuthProvider.objects.get(organization=org_a, slug="jira")
    assert "s3cr3t" not in provider.client_secret_blob
    assert services.provider_client(provider).client_secret == "s3cr3t-client-secret-value"
    event = AuditEvent.objects.get(action="oauth_provider.created")
    assert "s3cr3t" not in str(event.details) and event.details["confidential_client"] is True
    page = client_as(alice).get(f"/o/{org_a.slug}/providers/{provider.pk}/")
    assert page.status_code == 200 and b"s3cr3t" not in page.content


def test_editing_without_a_secret_keeps_the_stored_one(org_a, alice, client_as):
    client_as(alice).post(f"/o/{org_a.slug}/providers/new/", _form())
    provider = OAuthProvider.objects.get(slug="jira")
    response = client_as(alice).post(
        f"/o/{org_a.slug}/providers/{provider.pk}/", _form(client_secret="", scopes="read")
    )
    assert response.status_code == 302
    provider.refresh_from_db()
    assert provider.scopes == "read"
    assert services.provider_client(provider).client_secret == "s3cr3t-client-secret-value"


def test_members_cannot_manage_providers(org_a, bob, client_as, row_counts):
    before = row_counts()
    assert client_as(bob).get(f"/o/{org_a.slug}/providers/").status_code == 403
    assert client_as(bob).post(f"/o/{org_a.slug}/providers/new/", _form()).status_code == 403
    assert row_counts() == before
    with pytest.raises(PermissionDeniedError):
        services.provider_create(
            org=org_a,
            actor=bob,
            name="x",
            client_id="y",
            token_endpoint_auth_method="none",
            authorization_endpoint="https://a.test/a",
            token_endpoint="https://a.test/t",
        )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"client_id": ""}, b"This field is required"),
        ({"client_secret": ""}, b"Enter the client secret"),
        ({"token_endpoint_auth_method": "none"}, b"has no client secret"),
        ({"authorization_endpoint": "", "issuer": ""}, b"Enter the issuer"),
        ({"token_endpoint": "ftp://x.test/t"}, b"Use an https:// URL"),
        ({"token_endpoint": "not a url"}, b"Enter a valid URL"),
        ({"resource": "not a uri"}, b"resource indicator"),
        ({"token_endpoint_auth_method": "magic"}, b"Select a valid choice"),
    ],
)
def test_bad_provider_input_is_a_form_error_and_changes_nothing(
    org_a, alice, client_as, row_counts, overrides, message
):
    before = row_counts()
    response = client_as(alice).post(f"/o/{org_a.slug}/providers/new/", _form(**overrides))
    assert response.status_code == 400
    assert message in response.content
    assert row_counts() == before


def test_duplicate_slug_is_refused(org_a, alice, client_as, row_counts):
    client_as(alice).post(f"/o/{org_a.slug}/providers/new/", _form())
    before = row_counts()
    response = client_as(alice).post(f"/o/{org_a.slug}/providers/new/", _form())
    assert response.status_code == 400 and b"exists" in response.content
    assert row_counts() == before


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/token",
        "https://127.0.0.1/token",
        "https://localhost/token",
        "https://10.0.0.5/token",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/token",
        "https://[::ffff:127.0.0.1]/token",
        "https://user:pw@auth.example.test/token",
        "file:///etc/passwd",
    ],
)
def test_ssrf_guard_refuses_private_addresses(settings, url):
    settings.CREDENTIALS_ALLOW_PRIVATE_URLS = False
    with pytest.raises(UnsafeURLError):
        check_url(url)


def test_ssrf_guard_refuses_a_provider_pointing_inside(
    settings, org_a, alice, client_as, row_counts
):
    settings.CREDENTIALS_ALLOW_PRIVATE_URLS = False
    before = row_counts()
    response = client_as(alice).post(
        f"/o/{org_a.slug}/providers/new/",
        # A public address literal (no DNS offline) for the one endpoint that is fine.
        _form(
            authorization_endpoint="https://93.184.215.14/authorize",
            token_endpoint="https://169.254.169.254/token",
        ),
    )
    assert response.status_code == 400 and b"private, loopback or link-local" in response.content
    response = client_as(alice).post(
        f"/o/{org_a.slug}/providers/new/", _form(issuer="http://127.0.0.1:1/")
    )
    assert response.status_code == 400 and b"https" in response.content
    assert row_counts() == before


@pytest.mark.e2e
def test_discovery_fills_endpoints_from_the_real_provider(oidc_provider, org_a, alice, client_as):
    response = client_as(alice).post(
        f"/o/{org_a.slug}/providers/new/",
        _form(
            issuer=oidc_provider.issuer,
            authorization_endpoint="",
            token_endpoint="",
            client_id=oidc_provider.confidential.client_id,
            client_secret=oidc_provider.confidential.client_secret,
        ),
    )
    assert response.status_code == 302, response.content[:400]
    provider = OAuthProvider.objects.get(slug="jira")
    meta = oidc_provider.metadata
    assert provider.authorization_endpoint == meta["authorization_endpoint"]
    assert provider.revocation_endpoint == meta["revocation_endpoint"]
    assert provider.introspection_endpoint == meta["introspection_endpoint"]
    assert provider.metadata["issuer"] == oidc_provider.issuer


@pytest.mark.e2e
def test_deleting_a_provider_revokes_its_connections(
    oidc_provider, connected, org_a, alice, client_as
):
    provider, _conn = connected()
    token = services.access_token_for(user=alice, provider=provider)
    response = client_as(alice).post(f"/o/{org_a.slug}/providers/{provider.pk}/delete/")
    assert response.status_code == 302
    assert not OAuthProvider.objects.filter(pk=provider.pk).exists()
    assert oidc_provider.introspect(token)["active"] is False


def test_provider_secret_blob_moved_to_another_provider_does_not_decrypt(org_a, alice):
    p1 = services.provider_create(
        org=org_a,
        actor=alice,
        name="One",
        client_id="a",
        client_secret="one-secret",
        authorization_endpoint="https://a.test/a",
        token_endpoint="https://a.test/t",
    )
    p2 = services.provider_create(
        org=org_a,
        actor=alice,
        name="Two",
        client_id="b",
        client_secret="two-secret",
        authorization_endpoint="https://a.test/a",
        token_endpoint="https://a.test/t",
    )
    OAuthProvider.objects.filter(pk=p2.pk).update(client_secret_blob=p1.client_secret_blob)
    p2.refresh_from_db()
    with pytest.raises(vault.VaultError):
        services.provider_client(p2)


@pytest.mark.e2e
def test_deleting_a_provider_a_catalog_server_uses_is_refused_before_anything_changes(
    oidc_provider, connected, org_a, alice, client_as, api_as, row_counts
):
    """A catalog server naming the provider (PROTECT) blocks the delete: refused up front with a
    message naming the server, no connection revoked, nothing deleted, never a 500."""
    from catalog import services as catalog_services
    from catalog.models import Server

    provider, conn = connected()
    token = services.access_token_for(user=alice, provider=provider)
    catalog_services.server_create(
        org=org_a,
        actor=alice,
        name="Team chat",
        slug="chat",
        url="https://chat.example.com/mcp",
        egress_hosts=["chat.example.com"],
        auth_mode="oauth",
        oauth_provider=provider,
    )
    api_client = api_as(alice)
    before = {k: v for k, v in row_counts().items() if k != "audit.AuditEvent"}

    page = client_as(alice).post(f"/o/{org_a.slug}/providers/{provider.pk}/delete/", follow=True)
    assert page.status_code == 200
    assert "is still used by server &#x27;Team chat&#x27;" in page.content.decode()
    assert "nothing was revoked or deleted" in page.content.decode()

    api = api_client.delete(f"/api/v1/orgs/{org_a.slug}/oauth-providers/{provider.pk}/")
    assert api.status_code == 400, api.content
    assert api.json()["code"] == "provider_in_use"
    assert "server 'Team chat'" in api.json()["detail"]

    after = {k: v for k, v in row_counts().items() if k != "audit.AuditEvent"}
    assert before == after
    assert OAuthProvider.objects.filter(pk=provider.pk).exists()
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.ACTIVE
    assert oidc_provider.introspect(token)["active"] is True  # not revoked at the provider
    assert services.access_token_for(user=alice, provider=provider) == token
    assert not AuditEvent.objects.filter(
        action__in=["connection.revoke_requested", "connection.deleted", "oauth_provider.deleted"]
    ).exists()

    # Once the server no longer names it, the same delete goes through and revokes.
    Server.objects.filter(slug="chat").delete()
    response = client_as(alice).post(f"/o/{org_a.slug}/providers/{provider.pk}/delete/")
    assert response.status_code == 302
    assert not OAuthProvider.objects.filter(pk=provider.pk).exists()
    assert oidc_provider.introspect(token)["active"] is False
