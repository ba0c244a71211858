import pytest
from django.core import mail

from audit.models import AuditEvent
from tenants import services
from tenants.authentication import agent_key_authenticate
from tenants.errors import PermissionDeniedError, TenantError
from tenants.models import Agent, Membership
from tenants.permissions import Role
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_org_create_makes_creator_owner_and_audits() -> None:
    user = UserFactory()
    org = services.org_create(name="Initech", slug="initech", owner=user)
    assert Membership.objects.get(organization=org, user=user).role == Role.OWNER
    event = AuditEvent.objects.get(action="org.created")
    assert event.organization == org and event.actor_user_id == user.pk


def test_org_create_refuses_taken_slug(org_a) -> None:
    with pytest.raises(TenantError, match="taken"):
        services.org_create(name="Other", slug="acme", owner=UserFactory())


def test_member_cannot_create_agents(org_a, bob) -> None:
    with pytest.raises(PermissionDeniedError):
        services.agent_create(org=org_a, actor=bob, name="X", slug="x")
    assert not Agent.objects.exists()
    assert not AuditEvent.objects.filter(action="agent.created").exists()


def test_agent_key_is_shown_once_and_authenticates(org_a, alice) -> None:
    agent = services.agent_create(org=org_a, actor=alice, name="Triage", slug="triage")
    key, plaintext = services.agent_key_create(
        org=org_a, actor=alice, agent=agent, expires_in_days=30
    )
    assert plaintext.startswith("mgw_") and plaintext not in key.key_hash
    assert agent_key_authenticate(plaintext) == key
    assert agent_key_authenticate(plaintext + "x") is None
    details = AuditEvent.objects.get(action="agent_key.created").details
    assert plaintext not in str(details)


def test_revoked_key_no_longer_authenticates(org_a, alice) -> None:
    agent = services.agent_create(org=org_a, actor=alice, name="Triage", slug="triage")
    key, plaintext = services.agent_key_create(org=org_a, actor=alice, agent=agent)
    services.agent_key_revoke(org=org_a, actor=alice, key=key)
    assert agent_key_authenticate(plaintext) is None
    with pytest.raises(TenantError, match="already revoked"):
        services.agent_key_revoke(org=org_a, actor=alice, key=key)


def test_invitation_is_single_use_and_mailed(org_a, alice) -> None:
    _, url = services.invitation_create(
        org=org_a, actor=alice, email="dana@acme.test", role=Role.AUDITOR
    )
    token = url.rstrip("/").rsplit("/", 1)[1]
    dana = UserFactory(email="dana@acme.test")
    membership = services.invitation_accept(token=token, user=dana)
    assert membership.role == Role.AUDITOR
    with pytest.raises(TenantError, match="accepted"):
        services.invitation_accept(token=token, user=dana)


def test_invitation_mail_is_sent_on_commit(
    org_a, alice, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        _, url = services.invitation_create(
            org=org_a, actor=alice, email="erin@acme.test", role=Role.MEMBER
        )
    assert len(mail.outbox) == 1 and url in mail.outbox[0].body


def test_invitation_for_another_email_is_refused(org_a, alice) -> None:
    _, url = services.invitation_create(
        org=org_a, actor=alice, email="dana@acme.test", role=Role.MEMBER
    )
    token = url.rstrip("/").rsplit("/", 1)[1]
    with pytest.raises(TenantError, match=r"is for dana@acme\.test"):
        services.invitation_accept(token=token, user=UserFactory(email="mallory@evil.test"))
    assert not Membership.objects.filter(user__email="mallory@evil.test").exists()


def test_last_owner_cannot_leave(org_a, alice) -> None:
    membership = Membership.objects.get(organization=org_a, user=alice)
    with pytest.raises(TenantError, match="last owner"):
        services.membership_remove(org=org_a, actor=alice, membership=membership)


def test_removing_member_disables_their_agents(org_a, alice, bob) -> None:
    agent = services.agent_create(
        org=org_a, actor=alice, name="Bob's bot", slug="bobs-bot", acting_for=bob
    )
    membership = Membership.objects.get(organization=org_a, user=bob)
    services.membership_remove(org=org_a, actor=alice, membership=membership)
    agent.refresh_from_db()
    assert not agent.is_active
    event = AuditEvent.objects.get(action="membership.removed")
    assert event.details["agents_disabled"] == ["bobs-bot"]


def test_admin_cannot_promote_to_owner(org_a, member_with_role, bob) -> None:
    admin = member_with_role(Role.ADMIN)
    membership = Membership.objects.get(organization=org_a, user=bob)
    with pytest.raises(PermissionDeniedError, match="owner"):
        services.membership_change_role(
            org=org_a, actor=admin, membership=membership, role=Role.OWNER
        )
    membership.refresh_from_db()
    assert membership.role == Role.MEMBER
