"""The tenants web UI: pages per role, forms, htmx partials, secrets shown once."""

import pytest
from django.core import mail
from django.urls import reverse

from tenants.authentication import agent_key_authenticate, personal_token_authenticate
from tenants.models import Agent, AgentKey, Invitation, Membership, PersonalAccessToken, Team
from tenants.permissions import Role
from tests.factories import AgentFactory, AgentKeyFactory, InvitationFactory, TeamFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    # The personas' passwords are hashed at setup; the default hasher costs ~1 s per test here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.mark.parametrize("role", list(Role.values))
def test_every_member_sees_the_lists_and_only_allowed_buttons(
    role, org_a, member_with_role, client_as
) -> None:
    user = member_with_role(role)
    agent = AgentFactory(organization=org_a)
    team = TeamFactory(organization=org_a)
    client = client_as(user)
    pages = {
        "members": reverse("tenants:members", args=["acme"]),
        "teams": reverse("tenants:teams", args=["acme"]),
        "team": reverse("tenants:team-detail", args=["acme", team.pk]),
        "agents": reverse("tenants:agents", args=["acme"]),
        "agent": reverse("tenants:agent-detail", args=["acme", agent.pk]),
    }
    html = {}
    for name, url in pages.items():
        response = client.get(url)
        assert response.status_code == 200, name
        html[name] = response.content.decode()
    manager = role in (Role.OWNER, Role.ADMIN)
    assert ("Invite someone" in html["members"]) is manager
    assert ("Create a team" in html["teams"]) is manager
    assert ("New agent" in html["agents"]) is manager
    assert ("Create a key" in html["agent"]) is manager
    assert "Leave organization" in html["members"]
    # The sidebar links of this app.
    for label in ("Agents &amp; keys", "Members", "Teams"):
        assert label in html["members"]
    create = client.get(reverse("tenants:agent-create", args=["acme"]))
    assert create.status_code == (200 if manager else 403)


def test_wrong_role_gets_403_and_nothing_changes(org_a, alice, bob, client_as, row_counts) -> None:
    agent = AgentFactory(organization=org_a)
    key = AgentKeyFactory(organization=org_a, agent=agent)
    client = client_as(bob)
    before = row_counts()
    posts = [
        (reverse("tenants:member-invite", args=["acme"]), {"email": "x@y.test", "role": "member"}),
        (reverse("tenants:teams", args=["acme"]), {"name": "T", "slug": "t"}),
        (reverse("tenants:agent-create", args=["acme"]), {"name": "A", "slug": "a"}),
        (reverse("tenants:agent-key-create", args=["acme", agent.pk]), {"name": "k"}),
        (reverse("tenants:agent-key-revoke", args=["acme", agent.pk, key.pk]), {}),
        (reverse("tenants:agent-set-active", args=["acme", agent.pk]), {"active": "false"}),
        (reverse("tenants:agent-detail", args=["acme", agent.pk]), {"name": "Renamed"}),
        (
            reverse("tenants:member-role", args=["acme", Membership.objects.get(user=alice).pk]),
            {"role": "member"},
        ),
    ]
    for url, data in posts:
        response = client.post(url, data)
        assert response.status_code == 403, url
        assert "Not allowed" in response.content.decode()
    assert row_counts() == before


def test_invite_with_htmx_shows_the_link_once_and_mails_it(
    alice, client_as, django_capture_on_commit_callbacks
) -> None:
    client = client_as(alice)
    url = reverse("tenants:member-invite", args=["acme"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"email": "dana@acme.test", "role": "auditor"}, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="invitations"' in html and "<html" not in html  # the partial only
    assert "secret-once" in html and "Copy link" in html
    invitation = Invitation.objects.get(email="dana@acme.test")
    assert invitation.role == Role.AUDITOR
    link = mail.outbox[0].body.split("Accept within")[1].split(": ", 1)[1].strip()
    assert link in html
    # The members page lists the pending invitation but never the link again.
    page = client.get(reverse("tenants:members", args=["acme"])).content.decode()
    assert "dana@acme.test" in page and link not in page


def test_invite_form_errors(alice, client_as, row_counts) -> None:
    client = client_as(alice)
    url = reverse("tenants:member-invite", args=["acme"])
    before = row_counts()
    html = client.post(url, {"email": "not-an-email", "role": "member"}).content.decode()
    assert "Enter a valid email address." in html
    html = client.post(url, {"email": "alice@acme.test", "role": "member"}).content.decode()
    assert "already a member" in html
    html = client.post(url, {"email": "e@acme.test", "role": "emperor"}).content.decode()
    assert "Select a valid choice" in html
    assert row_counts() == before


def test_change_role_with_htmx_swaps_the_row(alice, bob, client_as) -> None:
    membership = Membership.objects.get(user=bob)
    url = reverse("tenants:member-role", args=["acme", membership.pk])
    response = client_as(alice).post(url, {"role": "approver"}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and f'id="member-{membership.pk}"' in html
    assert "bob@acme.test is now Approver." in html and "<html" not in html
    membership.refresh_from_db()
    assert membership.role == Role.APPROVER


def test_last_owner_cannot_be_demoted(alice, client_as) -> None:
    membership = Membership.objects.get(user=alice)
    url = reverse("tenants:member-role", args=["acme", membership.pk])
    response = client_as(alice).post(url, {"role": "member"}, follow=True)
    assert "at least one owner" in response.content.decode()
    membership.refresh_from_db()
    assert membership.role == Role.OWNER


def test_remove_member_and_revoke_invitation(org_a, alice, bob, client_as) -> None:
    client = client_as(alice)
    membership = Membership.objects.get(user=bob)
    response = client.post(reverse("tenants:member-remove", args=["acme", membership.pk]), **HTMX)
    assert response.status_code == 200 and response.content == b""
    assert not Membership.objects.filter(user=bob).exists()
    invitation = InvitationFactory(organization=org_a)
    response = client.post(
        reverse("tenants:invitation-revoke", args=["acme", invitation.pk]), follow=True
    )
    assert "was revoked" in response.content.decode()
    invitation.refresh_from_db()
    assert invitation.status == "revoked"


def test_member_leaves(alice, bob, client_as) -> None:
    client = client_as(bob)
    response = client.post(reverse("tenants:leave", args=["acme"]), follow=True)
    assert "You left Acme." in response.content.decode()
    assert not Membership.objects.filter(user=bob).exists()
    assert client.get(reverse("tenants:members", args=["acme"])).status_code == 404


def test_team_create_and_members(alice, bob, client_as) -> None:
    client = client_as(alice)
    response = client.post(reverse("tenants:teams", args=["acme"]), {"name": "Ops", "slug": "ops"})
    team = Team.objects.get(slug="ops")
    assert response.status_code == 302
    url = reverse("tenants:team-detail", args=["acme", team.pk])
    response = client.post(url, {"members": [alice.pk, bob.pk]}, follow=True)
    assert "Members of Ops saved." in response.content.decode()
    assert set(team.members.all()) == {alice, bob}
    # Duplicate slug: a form error, no second team.
    html = client.post(reverse("tenants:teams", args=["acme"]), {"name": "Ops2", "slug": "ops"})
    assert "exists already" in html.content.decode()
    assert Team.objects.count() == 1


def test_team_members_refuses_someone_of_another_org(org_a, alice, charlie, client_as) -> None:
    team = TeamFactory(organization=org_a)
    url = reverse("tenants:team-detail", args=["acme", team.pk])
    html = client_as(alice).post(url, {"members": [charlie.pk]}).content.decode()
    assert "Select a valid choice" in html
    assert not team.members.exists()


def test_agent_create_edit_disable_enable(org_a, alice, bob, client_as) -> None:
    team = TeamFactory(organization=org_a, name="Ops", slug="ops")
    client = client_as(alice)
    response = client.post(
        reverse("tenants:agent-create", args=["acme"]),
        {
            "name": "Triage",
            "slug": "triage",
            "description": "Reads tickets",
            "acting_for": bob.pk,
            "team": team.pk,
            "tags": "daily, ops",
        },
        follow=True,
    )
    agent = Agent.objects.get(slug="triage")
    assert "Agent Triage created" in response.content.decode()
    assert (agent.acting_for, agent.team, agent.tags) == (bob, team, ["daily", "ops"])
    detail = reverse("tenants:agent-detail", args=["acme", agent.pk])
    response = client.post(
        detail, {"name": "Daily triage", "description": "", "tags": "x"}, follow=True
    )
    agent.refresh_from_db()
    assert (agent.name, agent.acting_for, agent.team, agent.tags) == (
        "Daily triage",
        None,
        None,
        ["x"],
    )
    toggle = reverse("tenants:agent-set-active", args=["acme", agent.pk])
    assert "is disabled" in client.post(toggle, {"active": "false"}, follow=True).content.decode()
    agent.refresh_from_db()
    assert agent.is_active is False
    client.post(toggle, {"active": "true"})
    agent.refresh_from_db()
    assert agent.is_active is True


def test_agent_form_errors(org_a, alice, charlie, client_as, row_counts) -> None:
    AgentFactory(organization=org_a, slug="taken")
    url = reverse("tenants:agent-create", args=["acme"])
    client = client_as(alice)
    before = row_counts()
    cases = [
        ({"name": "A", "slug": "taken"}, "exists already"),
        ({"name": "A", "slug": "Bad Slug!"}, "lowercase letters"),
        ({"name": "A" * 101, "slug": "ok"}, "at most 100 characters"),
        ({"name": "A", "slug": "ok", "acting_for": charlie.pk}, "Select a valid choice"),
        ({"name": "A", "slug": "ok", "tags": "bad tag!"}, "is not valid"),
    ]
    for data, message in cases:
        response = client.post(url, data)
        assert response.status_code == 200
        assert message in response.content.decode(), data
    assert row_counts() == before


def test_key_is_shown_once_and_never_again(org_a, alice, client_as) -> None:
    agent = AgentFactory(organization=org_a)
    client = client_as(alice)
    response = client.post(
        reverse("tenants:agent-key-create", args=["acme", agent.pk]),
        {"name": "laptop", "expires_in_days": "30"},
    )
    assert response.status_code == 201
    html = response.content.decode()
    key = AgentKey.objects.get(agent=agent)
    plaintext = html.split('<code id="new-key">')[1].split("</code>")[0]
    assert plaintext.startswith("mgw_") and agent_key_authenticate(plaintext) == key
    assert "secret-once" in html
    assert "http://127.0.0.1:8000/mcp/acme/" in html
    assert f"Authorization: Bearer {plaintext}" in html
    again = client.get(reverse("tenants:agent-detail", args=["acme", agent.pk])).content.decode()
    assert key.prefix in again and plaintext not in again and key.key_hash not in again


def test_key_revoke_asks_for_confirmation(org_a, alice, client_as) -> None:
    agent = AgentFactory(organization=org_a)
    key, plaintext = AgentKeyFactory.issue(agent=agent)
    url = reverse("tenants:agent-key-revoke", args=["acme", agent.pk, key.pk])
    client = client_as(alice)
    confirm = client.get(url)
    assert "Revoke key" in confirm.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is None  # a GET changes nothing
    response = client.post(url, follow=True)
    assert "revoked" in response.content.decode()
    assert agent_key_authenticate(plaintext) is None
    again = client.post(url, follow=True)
    assert "already revoked" in again.content.decode()


def test_personal_tokens_page(alice, bob, client_as) -> None:
    client = client_as(alice)
    response = client.post(reverse("tenants:tokens"), {"name": "ci", "expires_in_days": "90"})
    assert response.status_code == 201
    html = response.content.decode()
    plaintext = html.split('<code id="new-token">')[1].split("</code>")[0]
    assert personal_token_authenticate(plaintext).user == alice
    token = PersonalAccessToken.objects.get(user=alice)
    page = client.get(reverse("tenants:tokens")).content.decode()
    assert token.prefix in page and plaintext not in page
    client.post(reverse("tenants:token-revoke", args=[token.pk]))
    assert personal_token_authenticate(plaintext) is None
    # Another user's token: 404, untouched.
    client_as(bob).post(reverse("tenants:tokens"), {"name": "bobs"})
    bobs = PersonalAccessToken.objects.get(user=bob)
    assert client.post(reverse("tenants:token-revoke", args=[bobs.pk])).status_code == 404
    bobs.refresh_from_db()
    assert bobs.revoked_at is None


def test_topbar_links_to_api_tokens(alice, client_as) -> None:
    html = client_as(alice).get(reverse("tenants:dashboard", args=["acme"])).content.decode()
    assert reverse("tenants:tokens") in html


def test_other_orgs_objects_are_404(org_b, alice, charlie, client_as) -> None:
    agent = AgentFactory(organization=org_b)
    key = AgentKeyFactory(organization=org_b, agent=agent)
    client = client_as(alice)
    assert client.get(reverse("tenants:agent-detail", args=["acme", agent.pk])).status_code == 404
    url = reverse("tenants:agent-key-revoke", args=["acme", agent.pk, key.pk])
    assert client.post(url).status_code == 404
    assert client.get(reverse("tenants:members", args=["globex"])).status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None


def test_reloading_the_key_page_does_not_create_a_second_key(org_a, alice, client_as) -> None:
    """A browser reload re-sends the POST that showed the key once; it must not mint another."""
    import re

    from tenants.models import AgentKey
    from tests.factories import AgentFactory

    agent = AgentFactory(organization=org_a)
    client = client_as(alice)
    page = client.get(reverse("tenants:agent-detail", args=["acme", agent.pk])).content.decode()
    nonce = re.search(r'name="form_nonce" value="([^"]+)"', page).group(1)
    url = reverse("tenants:agent-key-create", args=["acme", agent.pk])
    first = client.post(url, {"name": "ci", "form_nonce": nonce})
    assert first.status_code == 201 and "mgw_" in first.content.decode()
    again = client.post(url, {"name": "ci", "form_nonce": nonce}, follow=True)
    assert "already submitted" in again.content.decode()
    assert "mgw_" not in again.content.decode()
    assert AgentKey.objects.filter(agent=agent).count() == 1
