"""Factories for the catalog's tenant-owned models (one per model, taking `organization=`)."""

import factory

from catalog.definitions import definition_hash
from catalog.models import FetchJob, Server, ServerVersion, Tool, Transport, VersionStatus
from tenants.models import Membership
from tests.factories import OrganizationFactory, UserFactory


class ServerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Server
        skip_postgeneration_save = True  # `approved` saves what it changes itself

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Server {n}")
    slug = factory.Sequence(lambda n: f"server-{n}")
    transport = Transport.HTTP
    url = factory.Sequence(lambda n: f"https://mcp{n}.example.com/mcp")
    egress_hosts = factory.LazyAttribute(lambda o: [o.url.split("/")[2]])

    @factory.post_generation
    def approved(self, create: bool, extracted: object, **kwargs: object) -> None:
        """An approved version 1 (pass approved=False for a bare draft server)."""
        if not create or extracted is False:
            return
        version = ServerVersion.objects.create(
            organization=self.organization,
            server=self,
            number=1,
            status=VersionStatus.APPROVED,
            config_snapshot=self.connection_snapshot(),
        )
        self.approved_version = version
        self.status = "approved"
        self.save(update_fields=["approved_version", "status"])


class ServerVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ServerVersion

    organization = factory.SubFactory(OrganizationFactory)
    server = factory.SubFactory(
        ServerFactory, organization=factory.SelfAttribute("..organization"), approved=False
    )
    number = factory.Sequence(lambda n: n + 100)
    status = VersionStatus.DRAFT


def _hash(tool: "ToolFactory") -> str:
    return definition_hash(
        {
            "name": tool.name,
            "title": tool.title,
            "description": tool.description,
            "inputSchema": tool.input_schema,
            "outputSchema": None,
            "annotations": None,
        }
    )


class ToolFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tool

    organization = factory.SubFactory(OrganizationFactory)
    version = factory.SubFactory(
        ServerVersionFactory, organization=factory.SelfAttribute("..organization")
    )
    server = factory.SelfAttribute("version.server")
    name = factory.Sequence(lambda n: f"tool_{n}")
    title = ""
    description = "A tool."
    input_schema = factory.LazyFunction(lambda: {"type": "object", "properties": {}})
    definition_hash = factory.LazyAttribute(_hash)


def _member(org: object) -> object:
    user = UserFactory()
    Membership.objects.create(organization=org, user=user, role="member")
    return user


class FetchJobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FetchJob

    organization = factory.SubFactory(OrganizationFactory)
    server = factory.SubFactory(
        ServerFactory, organization=factory.SelfAttribute("..organization"), approved=False
    )
    requested_by = factory.LazyAttribute(lambda o: _member(o.organization))
