"""The trial's demo step registers the demo OAuth provider, once."""

import pytest

from credentials.models import OAuthProvider
from demo.seed import credentials as step
from demo.seed.context import DemoContext


def test_without_an_issuer_the_step_says_what_to_set(org_a, alice, monkeypatch):
    monkeypatch.delenv("DEMO_OAUTH_ISSUER", raising=False)
    ctx = DemoContext(org=org_a, admin=alice)
    step.seed(ctx)
    assert "DEMO_OAUTH_ISSUER" in ctx.summary["oauth_provider"]
    assert not OAuthProvider.objects.exists()


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
