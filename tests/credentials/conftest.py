"""Helpers for credentials tests: a real oidc-provider registered as an org's provider, and a
consent flow followed with an HTTP client (the provider auto-approves login and consent)."""

import urllib.parse
from collections.abc import Callable

import pytest

from credentials import services, vault
from credentials.models import OAuthProvider
from tests.peers.oidc import OidcProvider


@pytest.fixture(autouse=True)
def _credentials_settings(settings):
    # The test peers run on loopback; the SSRF guard's own tests turn this off.
    settings.CREDENTIALS_ALLOW_PRIVATE_URLS = True
    settings.SITE_URL = "http://127.0.0.1:8000"
    vault.clear_cache()
    yield
    vault.clear_cache()


@pytest.fixture
def register_provider() -> Callable[..., OAuthProvider]:
    def make(
        oidc: OidcProvider, *, org, actor, public: bool = False, slug: str = "tickets", **extra
    ) -> OAuthProvider:
        client = oidc.public if public else oidc.confidential
        return services.provider_create(
            org=org,
            actor=actor,
            name=extra.pop("name", "Tickets"),
            slug=slug,
            issuer=oidc.issuer,
            client_id=client.client_id,
            client_secret=client.client_secret or "",
            token_endpoint_auth_method=client.token_endpoint_auth_method,
            scopes=extra.pop("scopes", "tickets:read chat:write"),
            resource=extra.pop("resource", oidc.resource),
            **extra,
        )

    return make


def start_connect(client, org, provider) -> str:
    """POST the consent page's button; return the provider authorization URL."""
    response = client.post(f"/o/{org.slug}/connections/providers/{provider.pk}/connect/")
    assert response.status_code == 302, response.content[:500]
    return response["Location"]


def callback_path(callback_url: str) -> str:
    parts = urllib.parse.urlsplit(callback_url)
    return f"{parts.path}?{parts.query}"


@pytest.fixture
def connect_via_browser() -> Callable[..., object]:
    """Run the whole journey: consent page -> provider (auto-approve) -> our callback."""

    def run(client, org, provider, oidc: OidcProvider, *, account: str | None = None):
        authorize_url = start_connect(client, org, provider)
        callback = oidc.authorize(authorize_url, services.redirect_uri(), account=account)
        return client.get(callback_path(callback))

    return run


@pytest.fixture
def celery_eager():
    """Run tasks in-process (the tasks are the real ones; only the broker hop is skipped)."""
    from config.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield app
    app.conf.task_always_eager = previous


@pytest.fixture
def connected(oidc_provider, org_a, alice, client_as, register_provider, connect_via_browser):
    """alice connected to a confidential-client provider (returns (provider, connection))."""
    from credentials.models import Connection

    def make(*, user=None, public: bool = False, oidc=None, slug: str = "tickets"):
        oidc = oidc or oidc_provider
        user = user or alice
        provider = OAuthProvider.objects.filter(
            organization=org_a, slug=slug
        ).first() or register_provider(oidc, org=org_a, actor=alice, public=public, slug=slug)
        response = connect_via_browser(
            client_as(user), org_a, provider, oidc, account=user.email.split("@")[0]
        )
        assert response.status_code == 302, response.content[:300]
        return provider, Connection.objects.get(user=user, provider=provider)

    return make
