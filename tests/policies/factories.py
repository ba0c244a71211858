"""Factories of the policies app (one `<Model>Factory` per model, taking `organization=`), and
`approved_server(...)`: an approved catalog server with tools, the input every policy needs."""

from typing import Any

import factory
from django.utils import timezone

from catalog.models import Server, ServerStatus, ServerVersion, Tool, VersionStatus
from policies.models import Policy, PolicyRevision, RevisionAction, RevisionKind, ToolGroup
from tenants.models import Organization
from tests.factories import OrganizationFactory

DEMO_TOOLS: dict[str, dict[str, dict[str, Any]]] = {
    "tickets": {
        "list_tickets": {
            "status": {"type": "string", "enum": ["open", "in_progress", "closed"]},
            "updated_since": {"type": "string"},
        },
        "get_ticket": {"ticket_id": {"type": "string"}},
        "update_ticket": {
            "ticket_id": {"type": "string"},
            "status": {"type": "string"},
            "comment": {"type": "string", "maxLength": 4000},
        },
        "delete_ticket": {"ticket_id": {"type": "string"}},
        "whoami": {},
    },
    "chat": {
        "list_channels": {},
        "read_messages": {"channel": {"type": "string"}, "limit": {"type": "integer"}},
        "post_message": {"channel": {"type": "string"}, "text": {"type": "string"}},
        "delete_channel": {"channel": {"type": "string"}},
        "whoami": {},
    },
}


def approved_server(
    org: Organization,
    slug: str,
    tools: dict[str, dict[str, Any]] | None = None,
    *,
    quarantined: tuple[str, ...] = (),
) -> Server:
    """An approved server of `org` whose approved version has `tools` ({name: properties})."""
    tools = DEMO_TOOLS[slug] if tools is None else tools
    server = Server.objects.create(
        organization=org,
        name=slug.title(),
        slug=slug,
        url=f"https://{slug}.example.test/mcp",
        status=ServerStatus.APPROVED,
    )
    version = ServerVersion.objects.create(
        organization=org,
        server=server,
        number=1,
        status=VersionStatus.APPROVED,
        reviewed_at=timezone.now(),
        config_snapshot=server.connection_snapshot(),
    )
    for name, properties in tools.items():
        Tool.objects.create(
            organization=org,
            version=version,
            server=server,
            name=name,
            title=name.replace("_", " ").capitalize(),
            description=f"{name} of {slug}",
            input_schema={"type": "object", "properties": properties},
            definition_hash=f"{slug}-{name}-hash",
            quarantined=name in quarantined,
        )
    server.approved_version = version
    server.save(update_fields=["approved_version"])
    return server


class ToolGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ToolGroup

    organization = factory.SubFactory(OrganizationFactory)
    slug = factory.Sequence(lambda n: f"group-{n}")
    name = factory.LazyAttribute(lambda o: o.slug)
    tools = factory.LazyFunction(lambda: ["tickets.get_ticket"])


class PolicyFactory(factory.django.DjangoModelFactory):
    """A stored policy; its spec is what the editor would save (agents: ['*'], one allow)."""

    class Meta:
        model = Policy

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"policy-{n}")
    spec = factory.LazyAttribute(
        lambda o: {
            "name": o.name,
            "subjects": {"agents": ["*"]},
            "allow": {"tools": ["tickets.get_ticket"]},
        }
    )
    source_yaml = factory.LazyAttribute(
        lambda o: (
            f"name: {o.name}\nsubjects:\n  agents: ['*']\nallow:\n  tools: [tickets.get_ticket]\n"
        )
    )


class PolicyRevisionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PolicyRevision

    organization = factory.SubFactory(OrganizationFactory)
    policy = factory.SubFactory(PolicyFactory, organization=factory.SelfAttribute("..organization"))
    kind = RevisionKind.POLICY
    object_name = factory.LazyAttribute(lambda o: o.policy.name)
    revision = 1
    action = RevisionAction.CREATED
    source = "form"
    after = factory.LazyAttribute(lambda o: o.policy.snapshot())
