"""factory_boy factories. Convention: `<Model>Factory` for every tenant-owned model, so the
generic isolation test (tests/test_isolation.py) can build another org's object for any URL
kwarg named `<model_name>_id`. A factory takes `organization=` and builds everything it needs
inside that organization."""

import factory
from django.utils import timezone

from tenants import secrets
from tenants.models import (
    Agent,
    AgentKey,
    Invitation,
    Membership,
    Organization,
    PersonalAccessToken,
    Team,
    User,
)
from tenants.permissions import Role

DEFAULT_PASSWORD = "correct-horse-battery-staple-42"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", DEFAULT_PASSWORD)

    @factory.post_generation
    def _save(self, create: bool, extracted: object, **kwargs: object) -> None:
        if create:
            self.save()


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Org {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.MEMBER


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Team {n}")
    slug = factory.Sequence(lambda n: f"team-{n}")


class InvitationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Invitation

    organization = factory.SubFactory(OrganizationFactory)
    email = factory.Sequence(lambda n: f"invitee{n}@example.com")
    role = Role.MEMBER
    token_hash = factory.LazyFunction(lambda: secrets.new_token()[1])
    expires_at = factory.LazyFunction(lambda: timezone.now() + timezone.timedelta(days=3))


class AgentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agent

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Agent {n}")
    slug = factory.Sequence(lambda n: f"agent-{n}")


class AgentKeyFactory(factory.django.DjangoModelFactory):
    """Use `AgentKeyFactory.issue(agent=...)` when the test needs the plaintext key."""

    class Meta:
        model = AgentKey

    organization = factory.SubFactory(OrganizationFactory)
    agent = factory.SubFactory(AgentFactory, organization=factory.SelfAttribute("..organization"))
    prefix = factory.LazyFunction(lambda: secrets.issue_secret(secrets.AGENT_KEY_KIND).prefix)
    key_hash = "0" * 64

    @classmethod
    def issue(cls, *, agent: Agent, **kwargs: object) -> tuple[AgentKey, str]:
        issued = secrets.issue_secret(secrets.AGENT_KEY_KIND)
        key = cls(
            organization=agent.organization,
            agent=agent,
            prefix=issued.prefix,
            key_hash=issued.digest,
            **kwargs,
        )
        return key, issued.plaintext


class PersonalAccessTokenFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PersonalAccessToken

    user = factory.SubFactory(UserFactory)
    name = "token"
    prefix = factory.LazyFunction(lambda: secrets.issue_secret(secrets.PERSONAL_TOKEN_KIND).prefix)
    token_hash = "0" * 64

    @classmethod
    def issue(cls, *, user: User, **kwargs: object) -> tuple[PersonalAccessToken, str]:
        issued = secrets.issue_secret(secrets.PERSONAL_TOKEN_KIND)
        token = cls(user=user, prefix=issued.prefix, token_hash=issued.digest, **kwargs)
        return token, issued.plaintext
