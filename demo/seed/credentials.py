"""Demo step: the demo's OAuth provider (the demo chat's "Slack sign-in") and Maria's grant.

By default the provider is the demo OAuth server that `python -m demo.servers` serves at
`{DEMO_UPSTREAM_URL}/oauth` (demo/servers/oauth.py: a demo, no passwords, tokens in memory).
When it is reachable, Maria is connected through the real consent flow, the same code path as
the Connections page: `authorization_start`, the provider's one-click consent followed with an
HTTP client as her browser would, then `authorization_complete` with the callback's
parameters. The daily-triage agent acts for Maria, so its `chat.post_to_triage` works in the
first minute. When the demo servers are not running, the provider is registered with the demo
server's endpoints (no discovery) and Maria is simply not connected yet.

DEMO_OAUTH_ISSUER points the step at another OAuth server instead (e.g. the test peer
`node tests/peers/oidc/provider.mjs`, see docs/credentials.md), with DEMO_OAUTH_CLIENT_ID /
DEMO_OAUTH_CLIENT_SECRET registered there for `{SITE_URL}/oauth/callback`; no one is connected
automatically then. Idempotent.
"""

from __future__ import annotations

import importlib
import logging
import re
import urllib.parse
from typing import Any

import httpx2
from django.conf import settings

from config.env import env_str
from credentials import oauth, services, vault
from credentials.models import Connection, ConnectionStatus, OAuthProvider, TokenAuthMethod
from demo.seed.context import DemoContext
from tenants.errors import DomainError

logger = logging.getLogger(__name__)
SLUG = "demo-oauth"
DEMO_CLIENT_ID = "gateway-demo"  # demo/servers/oauth.py DEFAULT_CLIENT_ID (a public client)
DEMO_SCOPES = "chat:read chat:write"
_TIMEOUT = 5.0


def demo_issuer(ctx: DemoContext) -> str:
    return ctx.upstream_base_url.rstrip("/") + "/oauth"


def register_demo_provider(*, org: Any, actor: Any, issuer: str, resource: str) -> OAuthProvider:
    """Register the demo OAuth server by issuer (RFC 8414 discovery); when it cannot be reached,
    with its known endpoints instead, so the chat can still be linked to it."""
    fields = {
        "name": "Demo OAuth",
        "slug": SLUG,
        "client_id": DEMO_CLIENT_ID,
        "token_endpoint_auth_method": TokenAuthMethod.NONE,
        "scopes": DEMO_SCOPES,
        "resource": resource,
    }
    try:
        return services.provider_create(org=org, actor=actor, issuer=issuer, **fields)
    except DomainError as exc:
        if exc.field != "issuer":
            raise
        logger.info("demo OAuth server not reachable (%s): registering its endpoints", exc.message)
    return services.provider_create(
        org=org,
        actor=actor,
        authorization_endpoint=f"{issuer}/authorize",
        token_endpoint=f"{issuer}/token",
        revocation_endpoint=f"{issuer}/revoke",
        introspection_endpoint=f"{issuer}/introspect",
        **fields,
    )


def connect_member(*, provider: OAuthProvider, user: Any, account: str) -> Connection:
    """Connect `user` through the real consent flow, with an HTTP client as the browser: start
    the authorization (state + PKCE, as the Connect button does), click `account` on the demo
    server's one-click consent page, and complete the callback. Raises DomainError (or an
    httpx2 error) when any step fails; nothing is stored then."""
    session = importlib.import_module(settings.SESSION_ENGINE).SessionStore()
    authorize_url = services.authorization_start(provider=provider, user=user, session=session)
    with httpx2.Client(timeout=_TIMEOUT, follow_redirects=False) as browser:
        page = browser.get(authorize_url)
        found = re.search(r'name="interaction" value="([^"]+)"', page.text)
        if page.status_code != 200 or not found:
            raise services.CredentialError(
                f"The demo OAuth server showed no consent page (HTTP {page.status_code})."
            )
        action = urllib.parse.urljoin(authorize_url, urllib.parse.urlsplit(authorize_url).path)
        answer = browser.post(action, data={"interaction": found[1], "account": account})
    location = answer.headers.get("location", "")
    if answer.status_code not in (302, 303) or not location.startswith(services.redirect_uri()):
        raise services.CredentialError(
            f"The demo OAuth server did not send the browser back (HTTP {answer.status_code})."
        )
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
    connection, _ = services.authorization_complete(user=user, session=session, params=params)
    return connection


def _grant_alive(provider: OAuthProvider, connection: Connection) -> bool:
    """Does the demo server still know this grant? It keeps grants in memory, so a restart of
    the demo servers (a new trial run) forgets them while our database still holds them."""
    purpose, blob = services.REFRESH_PURPOSE, connection.refresh_token_blob
    if not blob:
        purpose, blob = services.ACCESS_PURPOSE, connection.access_token_blob
    try:
        token = vault.decrypt(
            org=connection.organization_id, purpose=purpose, row_uid=connection.uid, blob=blob
        )
        info = oauth.introspect(
            endpoints=services.provider_endpoints(provider),
            client=services.provider_client(provider),
            token=token,
        )
    except DomainError:
        return False
    return info.get("active") is True


def _reachable(issuer: str) -> bool:
    parts = urllib.parse.urlsplit(issuer)
    url = f"{parts.scheme}://{parts.netloc}/.well-known/oauth-authorization-server{parts.path}"
    try:
        return httpx2.get(url, timeout=_TIMEOUT).status_code == 200
    except httpx2.HTTPError:
        return False


def _external(ctx: DemoContext, issuer: str) -> OAuthProvider | None:
    secret = env_str("DEMO_OAUTH_CLIENT_SECRET")
    try:
        return services.provider_create(
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
        return None


def seed(ctx: DemoContext) -> None:
    provider = OAuthProvider.objects.for_org(ctx.org).filter(slug=SLUG).first()
    external = env_str("DEMO_OAUTH_ISSUER")
    issuer = external or demo_issuer(ctx)
    builtin = not external
    reachable = builtin and _reachable(issuer)
    if provider is None:
        if builtin:
            try:
                provider = register_demo_provider(
                    org=ctx.org,
                    actor=ctx.admin,
                    issuer=issuer,
                    resource=ctx.upstream_base_url.rstrip("/") + "/chat/mcp",
                )
            except DomainError as exc:
                logger.warning("demo OAuth provider not registered: %s", exc.message)
                ctx.summary["oauth_provider"] = f"not registered: {exc.message}"
                return
        else:
            provider = _external(ctx, issuer)
            if provider is None:
                return
    if builtin and reachable and not provider.issuer:
        # Registered while the demo servers were down: now discover (and check PKCE) properly.
        try:
            provider = services.provider_update(provider=provider, actor=ctx.admin, issuer=issuer)
        except DomainError as exc:
            logger.warning("demo OAuth provider discovery failed: %s", exc.message)
    ctx.objects["oauth_provider"] = provider

    member = ctx.member
    connection = Connection.objects.filter(user=member, provider=provider).first()
    state = "not connected"
    alive = connection is not None and connection.status == ConnectionStatus.ACTIVE
    if alive and builtin and reachable:
        alive = _grant_alive(provider, connection)
    if alive:
        state = "connected"
    elif builtin and reachable and member is not None:
        # Not connected, or a grant the (restarted) demo server no longer knows: consent again.
        try:
            connect_member(provider=provider, user=member, account=member.email)
            state = "connected"
        except (DomainError, httpx2.HTTPError) as exc:
            message = getattr(exc, "message", None) or type(exc).__name__
            logger.warning("could not connect %s to the demo OAuth server: %s", member, message)
            state = f"not connected ({message})"
    elif builtin:
        state = "not connected (the demo servers were not running)"
    connections_url = f"{settings.SITE_URL}/o/{ctx.org.slug}/connections/"
    ctx.summary["oauth_provider"] = {
        "name": provider.name,
        "issuer": provider.issuer or issuer,
        "redirect_uri": services.redirect_uri(),
        "connect_url": services.consent_url_for(provider),
    }
    ctx.summary["connections"] = {
        "member": member.email if member is not None else "",
        "provider": provider.name,
        "status": state,
        "page": connections_url,
        "how": f"sign in as {member.email if member else 'the member'}, open Connections "
        f"({connections_url}): Disconnect revokes the grant at the demo OAuth server (the "
        "agent's chat.post_to_triage then answers with the consent URL); Connect -> one click "
        "on the demo consent page reconnects",
    }
