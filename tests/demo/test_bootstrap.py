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
