"""The trial's demo step registers the demo OAuth provider, once."""

import pytest

from credentials.models import OAuthProvider
from demo.seed import credentials as step
from demo.seed.context import DemoContext


def test_without_an_issuer_the_builtin_demo_server_is_registered_even_when_down(
    org_a, alice, monkeypatch, settings
):
    """No DEMO_OAUTH_ISSUER: the demo OAuth server of `python -m demo.servers` is the provider.
    Not running (nothing listens there): registered from its known endpoints, nobody connected."""
    monkeypatch.delenv("DEMO_OAUTH_ISSUER", raising=False)
    settings.CREDENTIALS_ALLOW_PRIVATE_URLS = True
    ctx = DemoContext(org=org_a, admin=alice, upstream_base_url="http://127.0.0.1:9")
    step.seed(ctx)
    provider = OAuthProvider.objects.get(organization=org_a, slug="demo-oauth")
    assert provider.token_endpoint == "http://127.0.0.1:9/oauth/token"
    assert provider.is_public_client and provider.issuer == ""
    assert ctx.summary["connections"]["status"].startswith("not connected")
    step.seed(DemoContext(org=org_a, admin=alice, upstream_base_url="http://127.0.0.1:9"))
    assert OAuthProvider.objects.filter(organization=org_a).count() == 1


@pytest.mark.e2e
def test_registers_the_provider_once(oidc_provider, org_a, alice, monkeypatch):
    monkeypatch.setenv("DEMO_OAUTH_ISSUER", oidc_provider.issuer)
    monkeypatch.setenv("DEMO_OAUTH_CLIENT_ID", oidc_provider.confidential.client_id)
    monkeypatch.setenv("DEMO_OAUTH_CLIENT_SECRET", oidc_provider.confidential.client_secret)
    for _ in range(2):
        ctx = DemoContext(org=org_a, admin=alice)
        step.seed(ctx)
    provider = OAuthProvider.objects.get(organization=org_a)
    assert provider.token_endpoint == oidc_provider.metadata["token_endpoint"]
    assert ctx.summary["oauth_provider"]["connect_url"].endswith(
        f"/connections/providers/{provider.pk}/connect/"
    )
