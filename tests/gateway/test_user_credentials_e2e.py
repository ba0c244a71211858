"""Issue 6, "done when", through the real gateway: a member connects an OAuth provider (the real
npm `oidc-provider`) through the consent flow; an agent acting for that member calls a tool of a
catalog server that needs the member's grant (the demo tickets server over HTTP, whose `whoami`
reports a fingerprint of the Authorization header it received); the upstream sees the member's
token, never the agent key; the token expires at the provider and the next call still works
because it was refreshed; disconnect revokes it at the provider and the next call gets the
consent-required error with the consent URL; every call is audited with the connection used.

Everything is real: the official SDK client with an agent key, the gateway under uvicorn, the
catalog, policy and credentials services, the demo upstream process, the OAuth server.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from audit.models import AuditEvent
from catalog import services as catalog
from credentials import services as credentials
from credentials import vault
from credentials.models import Connection
from demo.servers.common import authorization_fingerprint
from gateway import errors
from gateway.pipeline import _TOKEN_CACHE_SECONDS
from policies.services import policy_apply
from tests.credentials.conftest import callback_path, start_connect
from tests.gateway.conftest import mcp_client

pytestmark = [pytest.mark.e2e]

# Short, so the test sees a real expiry at the provider; the gateway treats a token as expired
# 30 s early (credentials.services.EXPIRY_SKEW), so this leaves a few seconds of "fresh".
ACCESS_TOKEN_TTL = 36

POLICY = """
policies:
  - name: alice-assistant
    consumer: alice-bot
    allow:
      tools: ["tickets.whoami", "tickets.list_tickets"]
  - name: bob-assistant
    consumer: bob-bot
    allow:
      tools: ["tickets.whoami"]
"""


def fingerprint(token: str) -> str:
    return authorization_fingerprint(f"Bearer {token}")


def stored_access_token(connection: Connection) -> str:
    connection.refresh_from_db()
    return vault.decrypt(
        org=connection.organization_id,
        purpose=credentials.ACCESS_PURPOSE,
        row_uid=connection.uid,
        blob=connection.access_token_blob,
    )


def connect(client: Any, org: Any, provider: Any, oidc: Any, account: str) -> None:
    """The member's browser journey: consent page button -> provider login and consent
    (auto-approved by the peer) -> our callback."""
    callback = oidc.authorize(
        start_connect(client, org, provider), credentials.redirect_uri(), account=account
    )
    response = client.get(callback_path(callback))
    assert response.status_code == 302, response.content[:500]


def call(url: str, key: str, tool: str, mode: str = "2026-07-28") -> Any:
    """One tools/call through the gateway: the result, or the MCPError it raised."""

    async def scenario() -> Any:
        async with mcp_client(url, key, mode=mode) as client:
            try:
                return await client.call_tool(tool, {})
            except MCPError as exc:
                return exc

    return asyncio.run(scenario())


def assert_consent_error(result: Any, provider: Any, email: str) -> None:
    assert isinstance(result, MCPError), result
    assert result.code == errors.CONSENT_REQUIRED == -32042
    consent_url = credentials.consent_url_for(provider)
    assert consent_url.endswith(f"/connections/providers/{provider.pk}/connect/")
    assert email in result.message and consent_url in result.message
    [elicitation] = result.data["elicitations"]
    assert elicitation["mode"] == "url" and elicitation["url"] == consent_url


def wait_until(predicate: Any, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.5)


@pytest.fixture
def oauth_setup(
    settings,
    gateway,
    demo_upstream,
    oidc_provider_factory,
    org_a,
    alice,
    bob,
    member_with_role,
    client_as,
    agent_key,
):
    settings.CATALOG_ALLOW_PRIVATE_NETWORKS = True
    settings.CREDENTIALS_ALLOW_PRIVATE_URLS = True
    settings.SITE_URL = "http://127.0.0.1:8000"  # the redirect URI registered at the peer
    vault.clear_cache()
    oidc = oidc_provider_factory(access_token_ttl=ACCESS_TOKEN_TTL)
    provider = credentials.provider_create(
        org=org_a,
        actor=alice,
        name="Tickets SSO",
        slug="tickets-sso",
        issuer=oidc.issuer,
        client_id=oidc.confidential.client_id,
        client_secret=oidc.confidential.client_secret,
        token_endpoint_auth_method=oidc.confidential.token_endpoint_auth_method,
        scopes="tickets:read tickets:write",
        resource=oidc.resource,
    )
    # The server owner connects first: fetching an OAuth server's tools uses their own grant.
    alice_browser = client_as(alice)
    connect(alice_browser, org_a, provider, oidc, "alice")
    server = catalog.server_create(
        org=org_a,
        actor=alice,
        name="Tickets",
        slug="tickets",
        url=demo_upstream.tickets_url,
        egress_hosts=["127.0.0.1"],
        auth_mode="oauth",
        oauth_provider=provider,
    )
    version = catalog.server_fetch_tools(org=org_a, actor=alice, server=server)
    catalog.version_submit(org=org_a, actor=alice, version=version)
    catalog.version_approve(
        org=org_a, actor=member_with_role("approver"), version=version, acknowledge_findings=True
    )
    alice_agent, alice_key = agent_key("alice-bot", acting_for=alice)
    bob_agent, bob_key = agent_key("bob-bot", acting_for=bob)
    applied = policy_apply(org=org_a, actor=alice, text=POLICY, dry_run=False)
    assert applied.applied, applied.errors
    yield {
        "alice_agent": alice_agent.pk,
        "bob_agent": bob_agent.pk,
        "oidc": oidc,
        "provider": provider,
        "alice_browser": alice_browser,
        "alice_key": alice_key,
        "bob_key": bob_key,
    }
    vault.clear_cache()


def test_member_grant_reaches_upstream_refreshes_and_is_revoked(
    oauth_setup, gateway, org_a, alice, bob, client_as
):
    oidc, provider = oauth_setup["oidc"], oauth_setup["provider"]
    alice_key, bob_key = oauth_setup["alice_key"], oauth_setup["bob_key"]
    alice_agent, bob_agent = oauth_setup["alice_agent"], oauth_setup["bob_agent"]
    url = gateway.url(org_a.slug)
    alice_conn = Connection.objects.get(user=alice, provider=provider)

    # 1. The agent acting for alice: the upstream sees alice's token, not the agent key.
    first = call(url, alice_key, "tickets.whoami")
    assert not isinstance(first, MCPError) and not first.is_error, first
    first_token = stored_access_token(alice_conn)
    seen_first = first.content[0].text
    assert seen_first == fingerprint(first_token)
    assert seen_first != fingerprint(alice_key)
    first_info = oidc.introspect(first_token)
    assert first_info["active"] is True and first_info["sub"] == "alice"
    first_call_at = time.monotonic()

    # 2. bob has no connection: his agent gets the consent error; alice's grant is not used.
    refused = call(url, bob_key, "tickets.whoami", mode="legacy")
    assert_consent_error(refused, provider, bob.email)
    bob_browser = client_as(bob)
    connect(bob_browser, org_a, provider, oidc, "bob")
    bob_conn = Connection.objects.get(user=bob, provider=provider)
    bob_seen = call(url, bob_key, "tickets.whoami", mode="legacy")
    assert not isinstance(bob_seen, MCPError) and not bob_seen.is_error, bob_seen
    bob_token = stored_access_token(bob_conn)
    assert bob_seen.content[0].text == fingerprint(bob_token) != seen_first
    assert oidc.introspect(bob_token)["sub"] == "bob"

    # 3. alice's access token really expires at the provider; the next call still works,
    #    with a new token the provider issued (refreshed under the row lock).
    wait_until(
        lambda: oidc.introspect(first_token)["active"] is False,
        timeout=ACCESS_TOKEN_TTL + 15,
        what="the provider to expire alice's first access token",
    )
    refreshes_before = AuditEvent.objects.filter(
        action="connection.refreshed", target_id=str(alice_conn.pk)
    ).count()
    second = call(url, alice_key, "tickets.whoami", mode="legacy")
    assert not isinstance(second, MCPError) and not second.is_error, second
    second_token = stored_access_token(alice_conn)
    assert second_token != first_token
    assert second.content[0].text == fingerprint(second_token) != seen_first
    second_info = oidc.introspect(second_token)
    assert second_info["active"] is True and second_info["sub"] == "alice"
    assert (
        AuditEvent.objects.filter(
            action="connection.refreshed", target_id=str(alice_conn.pk)
        ).count()
        > refreshes_before
    )
    second_call_at = time.monotonic()

    # 4. alice disconnects: revoked at the provider (introspection), deleted here.
    response = oauth_setup["alice_browser"].post(
        f"/o/{org_a.slug}/connections/{alice_conn.pk}/disconnect/"
    )
    assert response.status_code == 302
    assert not Connection.objects.filter(pk=alice_conn.pk).exists()
    assert oidc.introspect(second_token)["active"] is False
    # The gateway keeps a decrypted token in memory for _TOKEN_CACHE_SECONDS (per process);
    # past that, the next call must ask alice to consent again, with the URL.
    time.sleep(max(0.0, second_call_at + _TOKEN_CACHE_SECONDS + 0.5 - time.monotonic()))
    third = call(url, alice_key, "tickets.whoami")
    assert_consent_error(third, provider, alice.email)
    # bob's grant is untouched by alice's disconnect (his token expired meanwhile: refreshed).
    bob_again = call(url, bob_key, "tickets.whoami")
    assert not isinstance(bob_again, MCPError) and not bob_again.is_error, bob_again
    bob_token_now = stored_access_token(bob_conn)
    assert bob_again.content[0].text == fingerprint(bob_token_now)
    assert oidc.introspect(bob_token_now)["active"] is True
    assert first_call_at < second_call_at

    # 5. Every call is audited with the connection whose token went upstream, never a token.
    calls = list(AuditEvent.objects.filter(action="tool.call").order_by("id"))
    summary = [
        (
            e.agent_id,
            e.on_behalf_of_label,
            e.outcome,
            e.error_class,
            e.details.get("connection_id"),
        )
        for e in calls
    ]
    assert summary == [
        (alice_agent, alice.email, "success", "", alice_conn.pk),
        (bob_agent, bob.email, "failure", "credential", None),
        (bob_agent, bob.email, "success", "", bob_conn.pk),
        (alice_agent, alice.email, "success", "", alice_conn.pk),
        (alice_agent, alice.email, "failure", "credential", None),
        (bob_agent, bob.email, "success", "", bob_conn.pk),
    ]
    assert all(e.server == "tickets" and e.tool == "whoami" for e in calls)
    assert calls[0].details["connection"] == f"tickets-sso connection #{alice_conn.pk}"
    everything = str(list(AuditEvent.objects.values_list("details", flat=True))) + str(
        list(AuditEvent.objects.values_list("target_label", flat=True))
    )
    for secret in (first_token, second_token, bob_token, bob_token_now, alice_key, bob_key):
        assert secret not in everything
