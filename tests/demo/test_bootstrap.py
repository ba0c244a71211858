"""bootstrap_demo: what a newcomer gets in the first minute, and that running it again is safe."""

import io
import json

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from catalog.models import Server
from policies.models import Policy
from tenants.authentication import agent_key_authenticate
from tenants.models import AgentKey, Organization

pytestmark = pytest.mark.django_db


def _bootstrap(*args: str) -> dict:
    out = io.StringIO()
    call_command("bootstrap_demo", *args, stdout=out)
    return json.loads(out.getvalue())


def test_bootstrap_seeds_a_working_demo_and_is_idempotent() -> None:
    first = _bootstrap("--reset-passwords")
    assert first["organization"] == "demo"
    assert first["mcp_url"].endswith("/mcp/demo/")
    org = Organization.objects.get(slug="demo")

    # The printed people can sign in with the printed passwords.
    for role in ("admin", "member", "auditor"):
        person = first[role]
        assert authenticate(username=person["email"], password=person["password"]) is not None, role

    # The printed agent key works; the demo catalog is approved; the daily-triage policy is live.
    key = agent_key_authenticate(first["agent_key"])
    assert key is not None and key.agent.slug == "daily-triage-agent"
    assert set(Server.objects.for_org(org).values_list("slug", "status")) == {
        ("tickets", "approved"),
        ("chat", "approved"),
    }
    assert Policy.objects.for_org(org).filter(name="daily-triage").exists()
    # The chat needs each user's own grant at the demo OAuth provider; with the demo servers
    # not running, the provider is registered from its known endpoints and nobody is connected.
    chat = Server.objects.for_org(org).get(slug="chat")
    assert chat.auth_mode == "oauth" and chat.oauth_provider.slug == "demo-oauth"
    assert Server.objects.for_org(org).get(slug="tickets").auth_mode == "none"
    assert chat.oauth_provider.token_endpoint.endswith("/oauth/token")
    assert first["connections"]["status"].startswith("not connected")
    assert "Disconnect" in first["connections"]["how"]

    second = _bootstrap()
    assert Organization.objects.filter(slug="demo").count() == 1
    assert Server.objects.for_org(org).count() == 2
    assert Policy.objects.for_org(org).count() == 1
    # A fresh key each run (keys are shown once); the previous demo key is revoked, not left live.
    assert second["agent_key"] != first["agent_key"]
    assert agent_key_authenticate(first["agent_key"]) is None
    assert AgentKey.objects.for_org(org).filter(revoked_at__isnull=True).count() == 1
    # Without --reset-passwords nobody's password changes (and none is printed).
    assert (
        authenticate(username=first["admin"]["email"], password=first["admin"]["password"])
        is not None
    )
    assert "unchanged" in second["admin"]["password"]


@pytest.mark.e2e
def test_bootstrap_with_the_demo_servers_running_connects_maria(
    demo_upstream_secured, settings, caplog
) -> None:
    """The trial's first minute: the demo OAuth server is up, so Maria is connected through the
    consent flow and the chat's tools were fetched with her own token (the chat refuses any
    other request). A second run keeps her grant."""
    import httpx2

    from audit.models import AuditEvent
    from credentials import services, vault
    from credentials.models import Connection, ConnectionStatus

    settings.DEMO_UPSTREAM_URL = str(demo_upstream_secured)
    settings.SITE_URL = "http://127.0.0.1:8000"
    settings.CREDENTIALS_ALLOW_PRIVATE_URLS = True
    settings.CATALOG_ALLOW_PRIVATE_NETWORKS = True
    vault.clear_cache()
    caplog.set_level("INFO", logger="demo.seed.catalog")
    first = _bootstrap()
    assert first["connections"]["status"] == "connected", first["connections"]
    assert first["oauth_provider"]["issuer"] == demo_upstream_secured.oauth_issuer
    connection = Connection.objects.get(user__email="maria@demo.test")
    assert connection.status == ConnectionStatus.ACTIVE
    assert connection.consent_scopes == "chat:read chat:write"
    org = Organization.objects.get(slug="demo")
    chat = Server.objects.for_org(org).get(slug="chat")
    assert chat.status == "approved" and chat.approved_version.tools.count() == 5
    # Fetched over HTTP with Maria's token, not from the in-process fallback.
    assert "recording definitions in-process" not in caplog.text

    second = _bootstrap()
    assert second["connections"]["status"] == "connected"
    assert Connection.objects.get(user__email="maria@demo.test").pk == connection.pk
    assert not AuditEvent.objects.filter(action="connection.reconnected").exists()

    # A new trial run restarts the demo servers, which forget every grant: consent again.
    demo_upstream_secured.restart()
    third = _bootstrap()
    assert third["connections"]["status"] == "connected"
    assert AuditEvent.objects.filter(action="connection.reconnected").count() == 1
    provider = Connection.objects.get(user__email="maria@demo.test").provider
    token = services.access_token_for(user=connection.user, provider=provider)
    with httpx2.Client(timeout=10) as http:
        info = http.post(
            f"{demo_upstream_secured.oauth_issuer}/introspect",
            data={"token": token, "client_id": provider.client_id},
        ).json()
    assert info["active"] is True and info["sub"] == "maria@demo.test"
    vault.clear_cache()
