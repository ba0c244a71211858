"""Bad input to the tenants UI and API: a clear 4xx or form error, nothing changed, never a 500."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tenants import services
from tenants.permissions import Role
from tests.factories import AgentFactory, AgentKeyFactory, PersonalAccessTokenFactory

pytestmark = pytest.mark.django_db

API = "/api/v1"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def agent(org_a):
    return AgentFactory(organization=org_a, slug="triage")


def _raw(client, method: str, url: str, body: str, content_type: str = "application/json"):
    return getattr(client, method)(url, data=body, content_type=content_type)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "orgs/", '{"name": "X", "slug": '),
        ("post", "orgs/acme/agents/", "{not json}"),
        ("post", "orgs/acme/invitations/", '["a", "list"]'),
        ("post", "orgs/acme/teams/", '"just a string"'),
        ("patch", "orgs/acme/agents/{agent}/", "null"),
        ("post", "tokens/", "\xff\xfe"),
    ],
)
def test_malformed_json(method, path, body, alice, agent, api_as, row_counts) -> None:
    client = api_as(alice)
    before = row_counts()
    response = _raw(client, method, f"{API}/{path.format(agent=agent.pk)}", body)
    assert response.status_code == 400
    assert response.json()["detail"]
    assert row_counts() == before


def test_form_encoded_body_is_refused_with_415(alice, api_as, row_counts) -> None:
    client = api_as(alice)
    before = row_counts()
    response = client.post(f"{API}/orgs/acme/teams/", {"name": "T", "slug": "t"})
    assert response.status_code == 415
    assert (
        "application/json" in response.json()["detail"] or "media type" in response.json()["detail"]
    )
    assert row_counts() == before


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "message"),
    [
        ("post", "orgs/", {"name": "X", "slug": "x", "plan": "pro"}, "plan", "Unknown field."),
        (
            "post",
            "orgs/acme/agents/",
            {"name": "A", "slug": "a", "organization": 2},
            "organization",
            "Unknown field.",
        ),
        ("patch", "orgs/acme/agents/{agent}/", {"slug": "renamed"}, "slug", "Unknown field."),
        ("post", "orgs/acme/agents/", {"name": "A" * 101, "slug": "a"}, "name", "no more than 100"),
        ("post", "orgs/acme/agents/", {"name": "A", "slug": "a" * 51}, "slug", "no more than 50"),
        (
            "post",
            "orgs/acme/agents/",
            {"name": "A", "slug": "a", "description": "d" * 2001},
            "description",
            "no more than 2000",
        ),
        ("post", "orgs/acme/agents/", {"name": "A", "slug": "Not A Slug"}, "slug", "lowercase"),
        ("post", "orgs/acme/agents/", {"name": "A", "slug": "a", "tags": "ops"}, "tags", "list"),
        (
            "post",
            "orgs/acme/agents/",
            {"name": "A", "slug": "a", "tags": ["x"] * 21},
            "tags",
            "no more than 20",
        ),
        (
            "post",
            "orgs/acme/agents/",
            {"name": "A", "slug": "a", "tags": ["bad tag!"]},
            "tags",
            "not valid",
        ),
        ("post", "orgs/acme/agents/", {"name": 5, "slug": ["a"]}, "slug", "valid string"),
        (
            "post",
            "orgs/acme/agents/",
            {"name": "A", "slug": "a", "team": "nope"},
            "team",
            "no team",
        ),
        ("post", "orgs/acme/agents/", {"name": "A", "slug": "triage"}, "slug", "exists already"),
        (
            "patch",
            "orgs/acme/agents/{agent}/",
            {"is_active": "maybe"},
            "is_active",
            "valid boolean",
        ),
        (
            "post",
            "orgs/acme/agents/{agent}/keys/",
            {"expires_in_days": "soon"},
            "expires_in_days",
            "valid integer",
        ),
        (
            "post",
            "orgs/acme/agents/{agent}/keys/",
            {"expires_in_days": 0},
            "expires_in_days",
            "greater than or equal to 1",
        ),
        (
            "post",
            "orgs/acme/agents/{agent}/keys/",
            {"expires_in_days": 99999},
            "expires_in_days",
            "less than or equal to 3650",
        ),
        ("post", "orgs/acme/invitations/", {"email": "nope"}, "email", "valid email"),
        (
            "post",
            "orgs/acme/invitations/",
            {"email": "x@y.test", "role": "god"},
            "role",
            "not a valid choice",
        ),
        (
            "post",
            "orgs/acme/invitations/",
            {"email": "x@y.test", "role": None},
            "role",
            "may not be null",
        ),
        (
            "patch",
            "orgs/acme/members/{membership}/",
            {"role": "king"},
            "role",
            "not a valid choice",
        ),
        ("patch", "orgs/acme/members/{membership}/", {}, "role", "required"),
        ("patch", "orgs/acme/teams/{team}/", {"members": "bob@acme.test"}, "members", "list"),
        ("post", "tokens/", {"name": ""}, "name", "may not be blank"),
        (
            "post",
            "tokens/",
            {"name": "t", "expires_in_days": -1},
            "expires_in_days",
            "greater than",
        ),
    ],
)
def test_invalid_fields(
    method, path, body, field, message, org_a, alice, bob, agent, api_as, row_counts
) -> None:
    from tests.factories import TeamFactory

    team = TeamFactory(organization=org_a)
    membership = bob.memberships.get()
    client = api_as(alice)
    before = row_counts()
    url = f"{API}/{path.format(agent=agent.pk, membership=membership.pk, team=team.pk)}"
    response = getattr(client, method)(url, body, format="json")
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert field in errors, errors
    assert message in " ".join(errors[field]), errors
    assert row_counts() == before


@pytest.mark.parametrize(
    "path",
    [
        "orgs/nope/",
        "orgs/nope/members/",
        "orgs/nope/agents/",
        "orgs/acme/agents/999999/",
        "orgs/acme/agents/999999/keys/",
        "orgs/acme/keys/999999/",
        "orgs/acme/members/999999/",
        "orgs/acme/invitations/999999/",
        "orgs/acme/teams/999999/",
        "tokens/999999/",
    ],
)
def test_unknown_slugs_and_ids_are_404(path, alice, api_as, row_counts) -> None:
    client = api_as(alice)
    before = row_counts()
    assert client.get(f"{API}/{path}").status_code == 404
    assert client.delete(f"{API}/{path}").status_code in (404, 405)
    assert row_counts() == before


def test_unknown_slugs_in_the_ui_are_404(alice, client_as) -> None:
    client = client_as(alice)
    assert client.get("/o/nope/members/").status_code == 404
    assert client.get("/o/acme/agents/999999/").status_code == 404
    assert client.post("/o/acme/members/999999/role/", {"role": "member"}).status_code == 404


def test_csrf_less_posts_are_refused(alice, bob, agent, row_counts) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    before = row_counts()
    posts = [
        (reverse("tenants:member-invite", args=["acme"]), {"email": "x@y.test", "role": "member"}),
        (reverse("tenants:agent-key-create", args=["acme", agent.pk]), {"name": "k"}),
        (reverse("tenants:tokens"), {"name": "t"}),
        (reverse("tenants:leave", args=["acme"]), {}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 403, url
    # The API with a browser session needs the CSRF token too (a bearer token does not).
    response = client.post(
        f"{API}/orgs/acme/teams/", {"name": "T", "slug": "t"}, content_type="application/json"
    )
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    assert row_counts() == before


def test_expired_and_reused_invitations(org_a, alice, client_as, row_counts) -> None:
    _, url = services.invitation_create(
        org=org_a, actor=alice, email="dana@acme.test", role=Role.MEMBER
    )
    path = url.replace("http://127.0.0.1:8000", "")
    anonymous = Client()
    form = {
        "name": "Dana",
        "password1": "a-long-pass-phrase-9",
        "password2": "a-long-pass-phrase-9",
    }
    assert anonymous.post(path, form).status_code == 302  # accepted: account created
    before = row_counts()
    reused = Client().post(path, form)
    assert reused.status_code == 410 and "accepted" in reused.content.decode()
    assert row_counts() == before
    # An expired one.
    invitation, url2 = services.invitation_create(
        org=org_a, actor=alice, email="erin@acme.test", role=Role.MEMBER
    )
    invitation.expires_at = timezone.now() - timedelta(minutes=1)
    invitation.save(update_fields=["expires_at"])
    before = row_counts()
    expired = Client().post(url2.replace("http://127.0.0.1:8000", ""), form)
    assert expired.status_code == 410 and "expired" in expired.content.decode()
    assert Client().get("/invite/not-a-real-token/").status_code == 404
    assert row_counts() == before


def test_revoked_and_expired_secrets_are_refused(org_a, alice, agent, api_as, row_counts) -> None:
    _, plaintext = PersonalAccessTokenFactory.issue(user=alice, revoked_at=timezone.now())
    _, plaintext2 = PersonalAccessTokenFactory.issue(
        user=alice, expires_at=timezone.now() - timedelta(days=1)
    )
    client = Client()
    for secret in (plaintext, plaintext2, "mgp_garbage", "not-even-close"):
        response = client.get(f"{API}/orgs/", HTTP_AUTHORIZATION=f"Bearer {secret}")
        assert response.status_code == 401
        assert "not valid" in response.json()["detail"]
    assert client.get(f"{API}/orgs/", HTTP_AUTHORIZATION="Basic abc").status_code == 401
    # A revoked key cannot be revoked again, an expired one still can (to mark it dead).
    key = AgentKeyFactory(organization=org_a, agent=agent, revoked_at=timezone.now())
    api = api_as(alice)
    before = row_counts()
    again = api.delete(f"{API}/orgs/acme/keys/{key.pk}/")
    assert again.status_code == 400 and "already revoked" in again.json()["detail"]
    assert row_counts() == before


def test_ui_key_form_errors(alice, agent, client_as, row_counts) -> None:
    client = client_as(alice)
    url = reverse("tenants:agent-key-create", args=["acme", agent.pk])
    before = row_counts()
    for value, message in (("0", "greater than or equal to 1"), ("abc", "Enter a whole number")):
        response = client.post(url, {"name": "k", "expires_in_days": value})
        assert response.status_code == 200
        assert message in response.content.decode()
    response = client.post(url, {"name": "k" * 101})
    assert "at most 100 characters" in response.content.decode()
    response = client.get(url)
    assert response.status_code == 405
    assert row_counts() == before


def test_ui_role_change_with_a_made_up_role(alice, bob, client_as) -> None:
    membership = bob.memberships.get()
    url = reverse("tenants:member-role", args=["acme", membership.pk])
    response = client_as(alice).post(url, {"role": "superuser"}, follow=True)
    assert "Choose one of the listed roles." in response.content.decode()
    membership.refresh_from_db()
    assert membership.role == Role.MEMBER


def test_ui_agent_toggle_needs_a_clear_choice(alice, agent, client_as) -> None:
    url = reverse("tenants:agent-set-active", args=["acme", agent.pk])
    response = client_as(alice).post(url, {"active": "perhaps"}, follow=True)
    assert "Choose to enable or disable" in response.content.decode()
    agent.refresh_from_db()
    assert agent.is_active is True
