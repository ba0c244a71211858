"""The tenants REST API: CRUD through the services, role permissions, one-time secrets."""

import re

import pytest
from django.core import mail
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from audit.models import AuditEvent
from tenants.authentication import agent_key_authenticate, personal_token_authenticate
from tenants.models import Agent, AgentKey, Invitation, Membership, PersonalAccessToken, Team
from tenants.permissions import Role
from tests.factories import (
    AgentFactory,
    AgentKeyFactory,
    InvitationFactory,
    PersonalAccessTokenFactory,
    TeamFactory,
)

pytestmark = pytest.mark.django_db

API = "/api/v1"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    # The personas' passwords are hashed at setup; the default hasher costs ~1 s per test here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api(api_as):
    """api_as, sending JSON bodies (the API parses JSON only)."""

    def make(user):
        client = api_as(user)
        client.default_format = "json"
        return client

    return make


def test_orgs_lists_only_the_callers_orgs_with_their_role(alice, bob, charlie, api) -> None:
    response = api(bob).get(f"{API}/orgs/")
    assert response.status_code == 200
    assert [(o["slug"], o["role"]) for o in response.json()["results"]] == [("acme", "member")]


def test_create_org_makes_the_caller_owner(charlie, api) -> None:
    response = api(charlie).post(f"{API}/orgs/", {"name": "Initech", "slug": "initech"})
    assert response.status_code == 201
    assert response.json()["role"] == "owner"
    assert Membership.objects.get(organization__slug="initech", user=charlie).role == Role.OWNER


def test_org_detail_and_unknown_slug(alice, org_b, api) -> None:
    client = api(alice)
    assert client.get(f"{API}/orgs/acme/").json()["name"] == "Acme"
    # Another org and a missing one look the same.
    assert client.get(f"{API}/orgs/globex/").status_code == 404
    assert client.get(f"{API}/orgs/nope/").status_code == 404


def test_members_list_and_owner_changes_a_role(alice, bob, api) -> None:
    client = api(alice)
    members = client.get(f"{API}/orgs/acme/members/").json()["results"]
    assert {m["user"]["email"]: m["role"] for m in members} == {
        "alice@acme.test": "owner",
        "bob@acme.test": "member",
    }
    bob_membership = Membership.objects.get(user=bob)
    response = client.patch(f"{API}/orgs/acme/members/{bob_membership.pk}/", {"role": "auditor"})
    assert response.status_code == 200 and response.json()["role"] == "auditor"
    bob_membership.refresh_from_db()
    assert bob_membership.role == Role.AUDITOR
    assert AuditEvent.objects.filter(action="membership.role_changed").exists()


def test_member_cannot_change_roles_or_remove_others(alice, bob, api, row_counts) -> None:
    client = api(bob)
    alice_membership = Membership.objects.get(user=alice)
    before = row_counts()
    response = client.patch(f"{API}/orgs/acme/members/{alice_membership.pk}/", {"role": "member"})
    assert response.status_code == 403
    assert "does not allow" in response.json()["detail"]
    assert client.delete(f"{API}/orgs/acme/members/{alice_membership.pk}/").status_code == 403
    alice_membership.refresh_from_db()
    assert alice_membership.role == Role.OWNER
    assert row_counts() == before


def test_member_leaves_by_deleting_their_own_membership(alice, bob, api) -> None:
    client = api(bob)
    own = Membership.objects.get(user=bob)
    assert client.delete(f"{API}/orgs/acme/members/{own.pk}/").status_code == 204
    assert not Membership.objects.filter(user=bob).exists()
    assert client.get(f"{API}/orgs/acme/").status_code == 404


def test_last_owner_cannot_leave(alice, api) -> None:
    own = Membership.objects.get(user=alice)
    response = api(alice).delete(f"{API}/orgs/acme/members/{own.pk}/")
    assert response.status_code == 400
    assert "last owner" in response.json()["detail"]
    assert Membership.objects.filter(pk=own.pk).exists()


def test_invitation_accept_url_is_returned_once(
    alice, api, django_capture_on_commit_callbacks
) -> None:
    client = api(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"{API}/orgs/acme/invitations/", {"email": "Dana@Acme.test", "role": "auditor"}
        )
    assert response.status_code == 201
    body = response.json()
    assert body["email"] == "dana@acme.test" and body["status"] == "pending"
    assert body["accept_url"].startswith("http") and "/invite/" in body["accept_url"]
    token = body["accept_url"].rstrip("/").rsplit("/", 1)[1]
    assert len(mail.outbox) == 1 and body["accept_url"] in mail.outbox[0].body
    # Later reads never show the link, the token or its hash.
    detail = client.get(f"{API}/orgs/acme/invitations/{body['id']}/").content.decode()
    listing = client.get(f"{API}/orgs/acme/invitations/").content.decode()
    invitation = Invitation.objects.get(pk=body["id"])
    for text in (detail, listing):
        assert token not in text and invitation.token_hash not in text
        assert "accept_url" not in text


def test_invitation_revoke_then_revoke_again(alice, org_a, api) -> None:
    invitation = InvitationFactory(organization=org_a, invited_by=alice)
    client = api(alice)
    response = client.delete(f"{API}/orgs/acme/invitations/{invitation.pk}/")
    assert response.status_code == 200 and response.json()["status"] == "revoked"
    again = client.delete(f"{API}/orgs/acme/invitations/{invitation.pk}/")
    assert again.status_code == 400 and "already revoked" in again.json()["detail"]


def test_admin_cannot_invite_an_owner(member_with_role, api, row_counts) -> None:
    client = api(member_with_role(Role.ADMIN))
    before = row_counts()
    response = client.post(
        f"{API}/orgs/acme/invitations/", {"email": "x@acme.test", "role": "owner"}
    )
    assert response.status_code == 403
    assert "owner" in response.json()["detail"]
    assert row_counts() == before


def test_teams_create_and_set_members(alice, bob, api) -> None:
    client = api(alice)
    created = client.post(f"{API}/orgs/acme/teams/", {"name": "Platform", "slug": "platform"})
    assert created.status_code == 201
    team_id = created.json()["id"]
    response = client.patch(
        f"{API}/orgs/acme/teams/{team_id}/",
        {"members": ["BOB@acme.test", "alice@acme.test"]},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["members"] == ["alice@acme.test", "bob@acme.test"]
    assert set(Team.objects.get(pk=team_id).members.all()) == {alice, bob}


def test_team_members_must_belong_to_the_org(alice, charlie, org_a, api) -> None:
    team = TeamFactory(organization=org_a)
    response = api(alice).patch(f"{API}/orgs/acme/teams/{team.pk}/", {"members": [charlie.email]})
    assert response.status_code == 400
    assert response.json()["errors"]["members"] == [
        "Not members of this organization: charlie@globex.test."
    ]
    assert not team.members.exists()


def test_agent_crud(alice, bob, org_a, api) -> None:
    TeamFactory(organization=org_a, slug="ops")
    client = api(alice)
    response = client.post(
        f"{API}/orgs/acme/agents/",
        {
            "name": "Triage",
            "slug": "triage",
            "acting_for": "bob@acme.test",
            "team": "ops",
            "tags": ["Daily", "ops"],
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["acting_for"], body["team"], body["tags"]) == (
        "bob@acme.test",
        "ops",
        ["daily", "ops"],
    )
    agent_id = body["id"]
    patched = client.patch(
        f"{API}/orgs/acme/agents/{agent_id}/",
        {"description": "Reads tickets", "acting_for": None, "team": None},
        format="json",
    )
    assert patched.status_code == 200
    assert (patched.json()["acting_for"], patched.json()["team"]) == (None, None)
    assert patched.json()["description"] == "Reads tickets"
    disabled = client.delete(f"{API}/orgs/acme/agents/{agent_id}/")
    assert disabled.status_code == 200 and disabled.json()["is_active"] is False
    assert Agent.objects.get(pk=agent_id).is_active is False
    listing = client.get(f"{API}/orgs/acme/agents/").json()
    assert listing["count"] == 1 and listing["results"][0]["slug"] == "triage"


def test_agent_cannot_act_for_someone_outside_the_org(alice, charlie, api, row_counts) -> None:
    client = api(alice)
    before = row_counts()
    response = client.post(
        f"{API}/orgs/acme/agents/",
        {"name": "X", "slug": "x", "acting_for": charlie.email},
        format="json",
    )
    assert response.status_code == 400
    assert "acting_for" in response.json()["errors"]
    assert row_counts() == before


def test_agent_key_is_returned_once_and_works(alice, org_a, api) -> None:
    agent = AgentFactory(organization=org_a)
    client = api(alice)
    response = client.post(
        f"{API}/orgs/acme/agents/{agent.pk}/keys/", {"name": "ci", "expires_in_days": 7}
    )
    assert response.status_code == 201
    body = response.json()
    plaintext = body["key"]
    assert body["mcp_url"].endswith("/mcp/acme/") and body["status"] == "active"
    assert agent_key_authenticate(plaintext).pk == body["id"]
    key = AgentKey.objects.get(pk=body["id"])
    for url in (f"{API}/orgs/acme/agents/{agent.pk}/keys/", f"{API}/orgs/acme/keys/{key.pk}/"):
        text = client.get(url).content.decode()
        assert key.prefix in text
        assert plaintext not in text and key.key_hash not in text and '"key"' not in text
    revoked = client.delete(f"{API}/orgs/acme/keys/{key.pk}/")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert agent_key_authenticate(plaintext) is None


def test_key_default_expiry_and_never_expiring(alice, org_a, api, settings) -> None:
    agent = AgentFactory(organization=org_a)
    client = api(alice)
    default = client.post(f"{API}/orgs/acme/agents/{agent.pk}/keys/", {}).json()
    forever = client.post(
        f"{API}/orgs/acme/agents/{agent.pk}/keys/", {"expires_in_days": None}
    ).json()
    key = AgentKey.objects.get(pk=default["id"])
    lifetime = key.expires_at - key.created_at
    assert round(lifetime.total_seconds() / 86400) == settings.AGENT_KEY_DEFAULT_TTL_DAYS
    assert forever["expires_at"] is None


def test_key_of_another_org_cannot_be_revoked(alice, charlie, org_b, api) -> None:
    foreign_agent = AgentFactory(organization=org_b)
    foreign_key, plaintext = AgentKeyFactory.issue(agent=foreign_agent)
    client = api(alice)
    assert client.delete(f"{API}/orgs/acme/keys/{foreign_key.pk}/").status_code == 404
    assert client.delete(f"{API}/orgs/globex/keys/{foreign_key.pk}/").status_code == 404
    assert client.get(f"{API}/orgs/acme/agents/{foreign_agent.pk}/keys/").status_code == 404
    foreign_key.refresh_from_db()
    assert foreign_key.revoked_at is None
    assert agent_key_authenticate(plaintext) is not None


def test_disabled_agent_gets_no_key(alice, org_a, api, row_counts) -> None:
    agent = AgentFactory(organization=org_a, is_active=False)
    client = api(alice)
    before = row_counts()
    response = client.post(f"{API}/orgs/acme/agents/{agent.pk}/keys/", {})
    assert response.status_code == 400
    assert "disabled" in response.json()["detail"]
    assert row_counts() == before


@pytest.mark.parametrize(
    ("role", "may_write"),
    [
        (Role.OWNER, True),
        (Role.ADMIN, True),
        (Role.APPROVER, False),
        (Role.AUDITOR, False),
        (Role.MEMBER, False),
    ],
)
def test_role_matrix_on_writes(role, may_write, org_a, member_with_role, api, row_counts) -> None:
    user = member_with_role(role)
    agent = AgentFactory(organization=org_a)
    key = AgentKeyFactory(organization=org_a, agent=agent)
    client = api(user)
    # Every member, auditors included, can read.
    for url in ("members/", "invitations/", "teams/", "agents/", f"agents/{agent.pk}/keys/"):
        assert client.get(f"{API}/orgs/acme/{url}").status_code == 200
    before = row_counts()
    writes = [
        client.post(f"{API}/orgs/acme/agents/", {"name": "N", "slug": f"n-{role}"}),
        client.post(f"{API}/orgs/acme/teams/", {"name": "T", "slug": f"t-{role}"}),
        client.post(f"{API}/orgs/acme/invitations/", {"email": f"{role}@new.test"}),
        client.delete(f"{API}/orgs/acme/keys/{key.pk}/"),
    ]
    expected = {201, 200} if may_write else {403}
    assert {r.status_code for r in writes} <= expected, [r.json() for r in writes]
    if not may_write:
        assert row_counts() == before
        key.refresh_from_db()
        assert key.revoked_at is None


def test_personal_tokens(alice, bob, api) -> None:
    client = api(alice)
    created = client.post(f"{API}/tokens/", {"name": "terraform", "expires_in_days": 30})
    assert created.status_code == 201
    plaintext = created.json()["token"]
    assert personal_token_authenticate(plaintext) is not None
    token = PersonalAccessToken.objects.get(pk=created.json()["id"])
    listing = client.get(f"{API}/tokens/").content.decode()
    assert token.prefix in listing and plaintext not in listing and token.token_hash not in listing
    # The new token works on its own.
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert other.get(f"{API}/orgs/").status_code == 200
    assert client.delete(f"{API}/tokens/{token.pk}/").json()["status"] == "revoked"
    assert other.get(f"{API}/orgs/").status_code == 401
    # Someone else's token is invisible.
    bobs, _ = PersonalAccessTokenFactory.issue(user=bob)
    assert client.delete(f"{API}/tokens/{bobs.pk}/").status_code == 404
    bobs.refresh_from_db()
    assert bobs.revoked_at is None


def test_session_auth_works_for_the_browser(alice, client_as) -> None:
    response = client_as(alice).get(f"{API}/orgs/acme/members/")
    assert response.status_code == 200


def test_anonymous_is_refused(org_a) -> None:
    response = APIClient().get(f"{API}/orgs/")
    assert response.status_code in (401, 403)
    assert "detail" in response.json()


def test_schema_is_valid_openapi_and_lists_our_routes(alice, client_as) -> None:
    response = client_as(alice).get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)
    assert "/api/v1/orgs/{org_slug}/agents/{agent_id}/keys/" in schema["paths"]
    assert "personalAccessToken" in schema["components"]["securitySchemes"]


def test_docs_render_without_external_urls(alice, client_as) -> None:
    response = client_as(alice).get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    external = re.findall(r"""(?:src|href)\s*=\s*["'](https?:)?//""", html)
    assert external == []
    assert "/static/drf_spectacular_sidecar/" in html
