"""Audit factories (the isolation test finds `<Model>Factory(organization=...)` here)."""

import factory
from django.utils import timezone

from audit.models import (
    AuditEvent,
    AuditExport,
    AuditRetention,
    AuditSeal,
    PrincipalRollup,
    ToolCallRollup,
)
from audit.sealing import GENESIS_HASH
from tests.factories import OrganizationFactory


class AuditEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AuditEvent

    organization = factory.SubFactory(OrganizationFactory)
    action = "member.invited"
    actor_label = factory.Sequence(lambda n: f"user{n}@example.com")
    target_type = "tenants.invitation"
    target_id = factory.Sequence(str)
    target_label = "an invitation"
    details = factory.LazyFunction(lambda: {"role": "member"})
    request_id = factory.Sequence(lambda n: f"req-{n:08d}")


class ToolCallEventFactory(AuditEventFactory):
    action = "tool.call"
    actor_label = ""
    agent_label = "daily-triage"
    agent_id = 1
    on_behalf_of_label = "alice@acme.test"
    server = "tickets"
    tool = "list_tickets"
    decision = "allow"
    latency_ms = 42.0
    upstream_latency_ms = 30.0
    target_type = "catalog.tool"
    target_label = "tickets.list_tickets"
    details = factory.LazyFunction(
        lambda: {"arguments": {"project": "OPS"}, "matched_rules": ["allow-read"], "reasons": []}
    )


class AuditSealFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AuditSeal

    organization = factory.SubFactory(OrganizationFactory)
    chain = factory.LazyAttribute(lambda o: f"org:{o.organization.pk}")
    sequence = factory.Sequence(lambda n: n + 1)
    previous_hash = GENESIS_HASH
    hash = "f" * 64


class AuditRetentionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AuditRetention

    organization = factory.SubFactory(OrganizationFactory)
    retention_days = 90


class AuditExportFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AuditExport

    organization = factory.SubFactory(OrganizationFactory)
    created_by_label = "auditor@example.com"
    format = "jsonl"
    max_event_id = 1
    completed_at = factory.LazyFunction(timezone.now)
    event_count = 0
    manifest = factory.LazyFunction(lambda: {"event_count": 0})


class ToolCallRollupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ToolCallRollup

    organization = factory.SubFactory(OrganizationFactory)
    hour = factory.LazyFunction(lambda: timezone.now().replace(minute=0, second=0, microsecond=0))
    server = "tickets"
    tool = factory.Sequence(lambda n: f"tool_{n}")
    latency_buckets = factory.LazyFunction(lambda: [0] * 13)


class PrincipalRollupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PrincipalRollup

    organization = factory.SubFactory(OrganizationFactory)
    hour = factory.LazyFunction(lambda: timezone.now().replace(minute=0, second=0, microsecond=0))
    agent_label = "daily-triage"
