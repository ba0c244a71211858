"""The trial's demo OAuth server (demo/servers/oauth.py) and the chat server it protects, over
real HTTP (`python -m demo.servers` in a child process, `--chat-auth oauth` as the trial runs
it): metadata, PKCE S256 required, the one-click consent, short-lived access tokens, rotating
refresh tokens with reuse detection, revocation and introspection, and a chat that answers
only with a live token. Plus the gateway's credentials services registering it as a provider
(discovery) and completing a connection through it."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
import urllib.parse
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from demo.servers.common import authorization_fingerprint
from demo.servers.oauth import DEFAULT_CLIENT_ID, DEFAULT_REDIRECT_URI

pytestmark = [pytest.mark.e2e]

REDIRECT = DEFAULT_REDIRECT_URI


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_query(challenge: str | None, **extra: str) -> dict[str, str]:
    query = {
        "response_type": "code",
        "client_id": DEFAULT_CLIENT_ID,
        "redirect_uri": REDIRECT,
        "scope": "chat:read chat:write",
        "state": "s-123",
        **extra,
    }
    if challenge:
        query |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    return query


def consent(http: httpx2.Client, issuer: str, query: dict[str, str], **form: str) -> dict[str, str]:
    """GET the consent page, click a button; return the redirect's query parameters."""
    page = http.get(f"{issuer}/authorize", params=query)
    assert page.status_code == 200, page.text
    assert "Demo OAuth server" in page.text and "no passwords" in page.text
    interaction = re.search(r'name="interaction" value="([^"]+)"', page.text)
    assert interaction
    answer = http.post(f"{issuer}/authorize", data={"interaction": interaction[1], **form})
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def tokens_for(http: httpx2.Client, issuer: str, account: str = "maria@demo.test") -> dict:
    verifier, challenge = pkce()
    params = consent(http, issuer, authorize_query(challenge), account=account)
    answer = http.post(
        f"{issuer}/token",
        data={
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
            "client_id": DEFAULT_CLIENT_ID,
        },
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def introspect(http: httpx2.Client, issuer: str, token: str) -> dict[str, Any]:
    return http.post(
        f"{issuer}/introspect", data={"token": token, "client_id": DEFAULT_CLIENT_ID}
    ).json()


async def chat_whoami(url: str, token: str | None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=10) as http,
        Client(streamable_http_client(url, http_client=http), mode="2026-07-28") as client,
    ):
        return (await client.call_tool("whoami", {})).content[0].text


def test_metadata_pkce_consent_and_code_exchange(demo_upstream_secured) -> None:
    issuer = demo_upstream_secured.oauth_issuer
    with httpx2.Client(timeout=10) as http:
        metadata = http.get(
            f"{demo_upstream_secured}/.well-known/oauth-authorization-server/oauth"
        ).json()
        assert metadata["issuer"] == issuer
        assert metadata["code_challenge_methods_supported"] == ["S256"]
        assert metadata["authorization_response_iss_parameter_supported"] is True
        for name in ("authorization", "token", "revocation", "introspection"):
            assert metadata[f"{name}_endpoint"].startswith(issuer + "/")

        # No PKCE: refused back at the client; an unregistered redirect URI: never redirected.
        no_pkce = http.get(f"{issuer}/authorize", params=authorize_query(None))
        assert no_pkce.status_code == 303 and "error=invalid_request" in no_pkce.headers["location"]
        elsewhere = http.get(
            f"{issuer}/authorize",
            params=authorize_query("x" * 43, redirect_uri="https://evil.example/cb"),
        )
        assert elsewhere.status_code == 400 and "location" not in elsewhere.headers

        # Deny: access_denied with state and iss.
        _, challenge = pkce()
        denied = consent(http, issuer, authorize_query(challenge), decision="deny")
        assert denied["error"] == "access_denied" and denied["state"] == "s-123"
        assert denied["iss"] == issuer

        # Allow; a wrong verifier fails, and the code is single use.
        verifier, challenge = pkce()
        params = consent(http, issuer, authorize_query(challenge), account="maria@demo.test")
        assert params["state"] == "s-123" and params["iss"] == issuer
        form = {
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": REDIRECT,
            "client_id": DEFAULT_CLIENT_ID,
        }
        wrong = http.post(f"{issuer}/token", data={**form, "code_verifier": pkce()[0]})
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
        again = http.post(f"{issuer}/token", data={**form, "code_verifier": verifier})
        assert again.json()["error"] == "invalid_grant"  # the failed attempt consumed it

        tokens = tokens_for(http, issuer)
        assert tokens["expires_in"] == 2 and tokens["refresh_token"]
        info = introspect(http, issuer, tokens["access_token"])
        assert info["active"] is True and info["sub"] == "maria@demo.test"
        assert info["scope"] == "chat:read chat:write"


def test_chat_needs_a_live_token_refresh_rotates_and_revocation_ends_the_grant(
    demo_upstream_secured,
) -> None:
    issuer, chat = demo_upstream_secured.oauth_issuer, demo_upstream_secured.chat_url
    with httpx2.Client(timeout=10) as http:
        # Without or with a made-up token: 401 with a Bearer challenge, before any MCP handling.
        bare = http.post(chat, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert bare.status_code == 401 and bare.headers["www-authenticate"].startswith("Bearer")
        forged = http.post(
            chat,
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Authorization": "Bearer demo_at_forged"},
        )
        assert (
            forged.status_code == 401
            and 'error="invalid_token"' in forged.headers["www-authenticate"]
        )
        # The tickets server stays open.
        assert anyio.run(chat_whoami, demo_upstream_secured.tickets_url, None) == "none"

        tokens = tokens_for(http, issuer)
        access = tokens["access_token"]
        seen = anyio.run(chat_whoami, chat, access)
        assert seen == authorization_fingerprint(f"Bearer {access}")

        # Short-lived: after its TTL the access token is refused by the chat and introspection.
        time.sleep(2.5)
        assert introspect(http, issuer, access)["active"] is False
        expired = http.post(
            chat,
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Authorization": f"Bearer {access}"},
        )
        assert expired.status_code == 401

        # Refresh rotates: a new pair; the old refresh token is spent.
        form = {"grant_type": "refresh_token", "client_id": DEFAULT_CLIENT_ID}
        refreshed = http.post(
            f"{issuer}/token", data={**form, "refresh_token": tokens["refresh_token"]}
        ).json()
        assert refreshed["refresh_token"] != tokens["refresh_token"]
        assert anyio.run(chat_whoami, chat, refreshed["access_token"]).startswith("sha256:")
        # Reusing the spent refresh token fails and ends the whole grant (theft detection).
        reused = http.post(
            f"{issuer}/token", data={**form, "refresh_token": tokens["refresh_token"]}
        )
        assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
        assert introspect(http, issuer, refreshed["refresh_token"])["active"] is False

        # RFC 7009: revoking a refresh token revokes its grant's access tokens too.
        other = tokens_for(http, issuer, account="admin@demo.test")
        assert introspect(http, issuer, other["access_token"])["active"] is True
        revoked = http.post(
            f"{issuer}/revoke",
            data={"token": other["refresh_token"], "client_id": DEFAULT_CLIENT_ID},
        )
        assert revoked.status_code == 200
        assert introspect(http, issuer, other["access_token"])["active"] is False
        assert introspect(http, issuer, other["refresh_token"])["active"] is False
        # A client that is not registered is refused.
        stranger = http.post(f"{issuer}/introspect", data={"token": "x", "client_id": "nope"})
        assert stranger.status_code == 401


@pytest.mark.django_db
def test_credentials_services_connect_through_the_demo_server(
    demo_upstream_secured, settings, org_a, alice
) -> None:
    """The gateway registers it by issuer (discovery, PKCE S256 advertised) and a member's
    programmatic consent (demo.seed.credentials.connect_member) stores a working grant."""
    from credentials import services, vault
    from credentials.models import Connection, ConnectionStatus
    from demo.seed.credentials import connect_member, register_demo_provider

    settings.CREDENTIALS_ALLOW_PRIVATE_URLS = True
    settings.SITE_URL = "http://127.0.0.1:8000"
    vault.clear_cache()
    provider = register_demo_provider(
        org=org_a, actor=alice, issuer=demo_upstream_secured.oauth_issuer, resource=""
    )
    assert provider.metadata["issuer"] == demo_upstream_secured.oauth_issuer
    assert provider.introspection_endpoint.endswith("/oauth/introspect")
    connection = connect_member(provider=provider, user=alice, account="maria@demo.test")
    assert connection.status == ConnectionStatus.ACTIVE
    assert Connection.objects.get(user=alice, provider=provider).pk == connection.pk
    token = services.access_token_for(user=alice, provider=provider)  # refreshed (TTL 2 s)
    assert anyio.run(chat_whoami, demo_upstream_secured.chat_url, token) == (
        authorization_fingerprint(f"Bearer {token}")
    )
    assert services.connection_disconnect(connection=connection, actor=alice) is True
    with httpx2.Client(timeout=10) as http:
        assert introspect(http, demo_upstream_secured.oauth_issuer, token)["active"] is False
    vault.clear_cache()
