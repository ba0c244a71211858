"""Per-user OAuth upstreams: a server names one of the org's OAuth providers; "Fetch tools"
reaches it with the fetching user's own connection (real oidc-provider, real MCP upstream that
introspects the token), and asks the user to connect first when they have none."""

from collections.abc import Iterator

import pytest

from audit.models import AuditEvent
from catalog import services
from catalog.errors import CatalogError, UpstreamError
from catalog.models import FetchJob, ServerVersion
from catalog.upstream import list_tools_sync, server_connection_config
from credentials import services as credential_services
from credentials import vault
from demo.servers.common import authorization_fingerprint
from tests.catalog.oauth_upstream import BearerUpstream
from tests.credentials.factories import OAuthProviderFactory

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]


@pytest.fixture(autouse=True)
def _credentials_settings(settings) -> Iterator[None]:
    settings.CREDENTIALS_ALLOW_PRIVATE_URLS = True  # the OAuth peer runs on loopback
    settings.SITE_URL = "http://127.0.0.1:8000"  # the peer's registered redirect URI
    vault.clear_cache()
    yield
    vault.clear_cache()


@pytest.fixture
def bearer_upstream(oidc_provider) -> Iterator[BearerUpstream]:
    upstream = BearerUpstream(oidc_provider).start()
    yield upstream
    upstream.stop()


def _connect(client, org, provider, oidc, account: str) -> None:
    """The member's consent journey: our connect button -> provider (auto-approve) -> callback."""
    start = client.post(f"/o/{org.slug}/connections/providers/{provider.pk}/connect/")
    assert start.status_code == 302
    callback = oidc.authorize(
        start["Location"], credential_services.redirect_uri(), account=account
    )
    _, _, query = callback.partition("?")
    assert client.get(f"/oauth/callback?{query}").status_code == 302


def test_fetch_uses_the_fetching_users_own_connection(
    org_a, alice, bob, client_as, oidc_provider, bearer_upstream,
    django_capture_on_commit_callbacks,
) -> None:  # fmt: skip
    provider = credential_services.provider_create(
        org=org_a, actor=alice, name="Tickets", slug="tickets", issuer=oidc_provider.issuer,
        client_id=oidc_provider.confidential.client_id,
        client_secret=oidc_provider.confidential.client_secret or "",
        token_endpoint_auth_method=oidc_provider.confidential.token_endpoint_auth_method,
        scopes="tickets:read", resource=oidc_provider.resource,
    )  # fmt: skip
    client = client_as(bob)
    form = client.get("/o/acme/servers/new/").content.decode()
    assert f'<option value="{provider.pk}">Tickets</option>' in form
    created = client.post(
        "/o/acme/servers/new/",
        {"name": "Ticket tracker", "slug": "tickets", "transport": "http",
         "url": bearer_upstream.url, "purpose": "Reads tickets for the daily triage",
         "auth_mode": "oauth", "oauth_provider": provider.pk, "data_classification": "internal"},
    )  # fmt: skip
    assert created.status_code == 302
    server = org_a.catalog_servers.get(slug="tickets")
    assert server.oauth_provider == provider
    # The gateway learns which provider's token to ask the vault for (the acting-for user's).
    assert server_connection_config(server).oauth_provider_id == provider.pk
    # The upstream really refuses requests without a token it can introspect.
    with pytest.raises(UpstreamError) as refused:
        list_tools_sync(server_connection_config(server))
    assert refused.value.code == "auth_required"
    bearer_upstream.seen.clear()

    # bob has not connected Tickets: the fetch stops before reaching the upstream.
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/o/acme/servers/{server.pk}/fetch/", HTTP_HX_REQUEST="true")
    job = FetchJob.objects.get(server=server)
    card = client.get(
        f"/o/acme/servers/{server.pk}/fetch-jobs/{job.pk}/", HTTP_HX_REQUEST="true"
    ).content.decode()
    consent_url = f"http://127.0.0.1:8000/o/acme/connections/providers/{provider.pk}/connect/"
    assert "Connect Tickets first." in card
    assert f'id="connect-provider" href="{consent_url}"' in card
    assert bearer_upstream.seen == [] and not ServerVersion.objects.filter(server=server).exists()

    _connect(client, org_a, provider, oidc_provider, account="bob")
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/o/acme/servers/{server.pk}/fetch/", HTTP_HX_REQUEST="true")
    job = FetchJob.objects.filter(server=server).first()
    assert job.state == "done" and job.tools_so_far == 5, job.error_message

    token = credential_services.access_token_for(user=bob, provider=provider)
    assert oidc_provider.introspect(token)["sub"] == "bob"
    assert bearer_upstream.seen and set(bearer_upstream.seen) == {
        authorization_fingerprint(f"Bearer {token}")
    }
    fetched = AuditEvent.objects.get(action="server.tools_fetched")
    assert fetched.details["oauth_provider"] == "tickets"
    # Once approved, the consent page tells members which server uses their grant, for what.
    services.version_submit(org=org_a, actor=bob, version=job.version)
    services.version_approve(org=org_a, actor=alice, version=job.version)
    consent = client.get(f"/o/acme/connections/providers/{provider.pk}/connect/").content.decode()
    assert "<strong>Ticket tracker</strong>: Reads tickets" in consent and "echo, fail" in consent

    everything = str(list(AuditEvent.objects.values_list("details", flat=True)))
    assert token not in everything and token not in str(list(FetchJob.objects.values()))


def test_provider_must_be_chosen_and_of_this_org(org_a, org_b, bob) -> None:
    foreign = OAuthProviderFactory(organization=org_b)
    kwargs = dict(org=org_a, actor=bob, name="T", slug="t", url="https://t.example.com/mcp")
    with pytest.raises(CatalogError) as missing:
        services.server_create(**kwargs, auth_mode="oauth")
    assert missing.value.field == "oauth_provider"
    with pytest.raises(CatalogError) as other_org:
        services.server_create(**kwargs, auth_mode="oauth", oauth_provider=foreign)
    assert other_org.value.field == "oauth_provider" and "not in this organization" in str(
        other_org.value
    )
