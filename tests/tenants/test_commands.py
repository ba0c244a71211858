"""createorg and createagent."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from tenants.authentication import agent_key_authenticate
from tenants.models import Agent, Membership, Organization, User
from tenants.permissions import Role

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_createorg_creates_the_owner_with_the_given_password() -> None:
    output = run(
        "createorg",
        "initech",
        "--name",
        "Initech",
        "--owner-email",
        "Pat@Initech.test",
        "--owner-password",
        "a-long-pass-phrase-9",
    )
    org = Organization.objects.get(slug="initech")
    owner = User.objects.get(email="pat@initech.test")
    assert org.name == "Initech" and owner.check_password("a-long-pass-phrase-9")
    assert Membership.objects.get(organization=org, user=owner).role == Role.OWNER
    assert "Created Initech (initech)" in output and "a-long-pass-phrase-9" not in output
    assert AuditEvent.objects.filter(action="org.created", organization=org).exists()


def test_createorg_generates_and_prints_a_password_once() -> None:
    output = run("createorg", "initech", "--owner-email", "pat@initech.test")
    password = output.split("(shown once): ")[1].strip()
    assert User.objects.get(email="pat@initech.test").check_password(password)


def test_createorg_reuses_an_existing_user(alice) -> None:
    run("createorg", "second", "--owner-email", "alice@acme.test")
    assert Membership.objects.get(organization__slug="second", user=alice).role == Role.OWNER
    assert User.objects.filter(email="alice@acme.test").count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["acme", "--owner-email", "x@y.test"], "taken"),
        (["Bad Slug", "--owner-email", "x@y.test"], "lowercase"),
        (["ok", "--owner-email", "not-an-email"], "not a valid email"),
        (["ok", "--owner-email", "x@y.test", "--owner-password", "123"], "Password refused"),
    ],
)
def test_createorg_errors_change_nothing(args, message, org_a, row_counts) -> None:
    before = row_counts()
    with pytest.raises(CommandError, match=message):
        run("createorg", *args)
    assert row_counts() == before


def test_createagent_with_a_key(alice, bob) -> None:
    output = run("createagent", "--org", "acme", "triage", "--acting-for", "bob@acme.test", "--key")
    agent = Agent.objects.get(slug="triage")
    assert agent.acting_for == bob and agent.created_by == alice
    key = output.split("(shown once, store it now): ")[1].split()[0]
    assert agent_key_authenticate(key).agent == agent
    assert "/mcp/acme/" in output


def test_createagent_without_key_prints_no_secret(alice) -> None:
    output = run("createagent", "--org", "acme", "triage")
    assert "mgw_" not in output and Agent.objects.filter(slug="triage").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--org", "nope", "x"], "no organization"),
        (["--org", "acme", "x", "--acting-for", "charlie@globex.test"], "not a member"),
        (["--org", "acme", "x", "--actor", "bob@acme.test"], "does not allow"),
        (["--org", "acme", "Bad Slug"], "lowercase"),
        (["--org", "acme", "taken"], "exists already"),
        (["--org", "acme", "x", "--key", "--expires-in-days", "0"], "between 1 and"),
    ],
)
def test_createagent_errors_change_nothing(
    args, message, org_a, alice, bob, charlie, row_counts
) -> None:
    Agent.objects.create(organization=org_a, name="Taken", slug="taken")
    before = row_counts()
    with pytest.raises(CommandError, match=message):
        run("createagent", *args)
    assert row_counts() == before
