"""Policy rows: names are unique per organization (not across), and history outlives them."""

import pytest
from django.db import IntegrityError, transaction

from policies import services
from policies.models import Policy, PolicyRevision
from tests.factories import AgentFactory
from tests.policies.factories import PolicyFactory, ToolGroupFactory, approved_server


def test_names_are_unique_within_an_organization_only(org_a, org_b):
    PolicyFactory(organization=org_a, name="readers")
    PolicyFactory(organization=org_b, name="readers")  # another tenant may use the same name
    ToolGroupFactory(organization=org_a, slug="triage")
    ToolGroupFactory(organization=org_b, slug="triage")
    with pytest.raises(IntegrityError), transaction.atomic():
        PolicyFactory(organization=org_a, name="readers")
    with pytest.raises(IntegrityError), transaction.atomic():
        ToolGroupFactory(organization=org_a, slug="triage")


def test_history_of_a_deleted_policy_remains_readable(org_a, alice):
    approved_server(org_a, "tickets")
    AgentFactory(organization=org_a, slug="bot")
    policy = services.policy_save(
        org=org_a, actor=alice, text="consumer: bot\nallow:\n  servers: [tickets]\n"
    )
    services.policy_delete(org=org_a, actor=alice, policy=policy)
    assert not Policy.objects.filter(organization=org_a).exists()
    history = list(PolicyRevision.objects.for_org(org_a).order_by("id"))
    assert [(r.object_name, r.action) for r in history] == [("bot", "created"), ("bot", "deleted")]
    assert history[1].before["spec"]["allow"] == {"servers": ["tickets"]}
    assert history[1].after is None
