"""Demo step: register the demo's OAuth provider (a stand-in for Slack / Jira sign-in) so a
member can connect their account on the Connections page. Idempotent.

The trial ships no authorization server of its own: point DEMO_OAUTH_ISSUER at one, e.g. the
test peer (`node tests/peers/oidc/provider.mjs`, see docs/credentials.md), with
DEMO_OAUTH_CLIENT_ID / DEMO_OAUTH_CLIENT_SECRET registered there for the redirect URI
`{SITE_URL}/oauth/callback`. Without DEMO_OAUTH_ISSUER this step only says so.
"""

import logging

from config.env import env_str
from credentials import services
from credentials.models import OAuthProvider, TokenAuthMethod
from demo.seed.context import DemoContext
from tenants.errors import DomainError

logger = logging.getLogger(__name__)
SLUG = "demo-oauth"


def seed(ctx: DemoContext) -> None:
    provider = OAuthProvider.objects.for_org(ctx.org).filter(slug=SLUG).first()
    issuer = env_str("DEMO_OAUTH_ISSUER")
    if provider is None and not issuer:
        ctx.summary["oauth_provider"] = (
            "not registered: set DEMO_OAUTH_ISSUER (and DEMO_OAUTH_CLIENT_ID/_SECRET) to an "
            "OAuth server to try the Connections page (docs/credentials.md)"
        )
        return
    if provider is None:
        secret = env_str("DEMO_OAUTH_CLIENT_SECRET")
        try:
            provider = services.provider_create(
                org=ctx.org,
                actor=ctx.admin,
                name="Demo OAuth",
                slug=SLUG,
                issuer=issuer,
                client_id=env_str("DEMO_OAUTH_CLIENT_ID", "gateway-confidential"),
                client_secret=secret,
                token_endpoint_auth_method=TokenAuthMethod.CLIENT_SECRET_BASIC
                if secret
                else TokenAuthMethod.NONE,
                scopes=env_str("DEMO_OAUTH_SCOPES", "tickets:read tickets:write chat:write"),
                resource=env_str("DEMO_OAUTH_RESOURCE"),
            )
        except DomainError as exc:
            logger.warning("demo OAuth provider not registered: %s", exc.message)
            ctx.summary["oauth_provider"] = f"not registered: {exc.message}"
            return
    ctx.objects["oauth_provider"] = provider
    ctx.summary["oauth_provider"] = {
        "name": provider.name,
        "redirect_uri": services.redirect_uri(),
        "connect_url": services.consent_url_for(provider),
    }
