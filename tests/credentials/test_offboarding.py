"""When someone leaves the organization, their grants are revoked at the provider and deleted."""

import pytest

from audit.models import AuditEvent
from credentials import services
from credentials.models import Connection, ConnectionStatus
from tenants import services as tenant_services
from tenants.models import Membership

pytestmark = pytest.mark.e2e


def test_removing_a_member_revokes_their_grants_and_only_theirs(
    oidc_provider, connected, org_a, alice, bob, celery_eager, django_capture_on_commit_callbacks
):
    provider, _bob_conn = connected(user=bob)
    _, alice_conn = connected(user=alice)
    bob_token = services.access_token_for(user=bob, provider=provider)
    alice_token = services.access_token_for(user=alice, provider=provider)

    with django_capture_on_commit_callbacks(execute=True):
        tenant_services.membership_remove(
            org=org_a, actor=alice, membership=Membership.objects.get(user=bob)
        )

    assert not Connection.objects.filter(user=bob).exists()
    assert oidc_provider.introspect(bob_token)["active"] is False
    assert oidc_provider.introspect(alice_token)["active"] is True
    assert Connection.objects.get(pk=alice_conn.pk).status == ConnectionStatus.ACTIVE
    actions = list(
        AuditEvent.objects.filter(target_type="credentials.connection")
        .order_by("id")
        .values_list("action", "details__reason")
    )
    assert ("connection.revoke_requested", "membership_ended") in actions
    assert AuditEvent.objects.get(action="connection.deleted").details["revoked_at_provider"]


def test_grant_is_unusable_at_once_even_if_the_provider_is_down(
    oidc_provider, connected, org_a, alice, bob
):
    provider, bob_conn = connected(user=bob)
    type(provider).objects.filter(pk=provider.pk).update(
        revocation_endpoint="http://127.0.0.1:9/revoke"
    )
    # No on-commit execution: the revocation task has not run (provider down / worker busy).
    tenant_services.membership_remove(
        org=org_a, actor=alice, membership=Membership.objects.get(user=bob)
    )
    bob_conn.refresh_from_db()
    assert bob_conn.status == ConnectionStatus.REVOKED
    with pytest.raises(services.ConsentRequired):
        services.access_token_for(user=bob, provider=provider)
    # The worker's sweep tries, fails, keeps the row for a retry (never silently drops it).
    assert services.revoke_connection(connection_id=bob_conn.pk) is False
    bob_conn.refresh_from_db()
    assert bob_conn.refresh_failures == 1 and bob_conn.next_attempt_at is not None
    assert AuditEvent.objects.filter(action="connection.revoke_failed").count() == 1
