"""Demo step 1: the organization, its people and the daily-triage agent with a key."""

import secrets

from django.conf import settings

from demo.seed.context import DemoContext
from tenants import services
from tenants.models import Agent, AgentKey, Membership, Organization, User
from tenants.permissions import Role

ORG_SLUG = "demo"
ADMIN_EMAIL = "admin@demo.test"
MEMBER_EMAIL = "maria@demo.test"
AGENT_SLUG = "daily-triage-agent"


def _user(email: str, name: str) -> tuple[User, str | None]:
    user = User.objects.filter(email=email).first()
    if user is not None:
        return user, None
    password = secrets.token_urlsafe(12)
    return User.objects.create_user(email=email, password=password, name=name), password


def seed(ctx: DemoContext) -> None:
    admin, admin_password = _user(ADMIN_EMAIL, "Ada Admin")
    org = Organization.objects.filter(slug=ORG_SLUG).first()
    if org is None:
        org = services.org_create(name="Demo Org", slug=ORG_SLUG, owner=admin)
    member, member_password = _user(MEMBER_EMAIL, "Maria Member")
    Membership.objects.get_or_create(organization=org, user=member, defaults={"role": Role.MEMBER})

    agent = Agent.objects.for_org(org).filter(slug=AGENT_SLUG).first()
    if agent is None:
        agent = services.agent_create(
            org=org,
            actor=admin,
            name="Daily triage agent",
            slug=AGENT_SLUG,
            description="Reads today's tickets, posts a summary to #triage, updates the tickets.",
            acting_for=member,
            tags=["triage", "demo"],
        )
    # A fresh key on every run: keys are shown once, so the only way to print one is to issue it.
    for old_key in AgentKey.objects.for_org(org).filter(
        agent=agent, name="demo", revoked_at__isnull=True
    ):
        services.agent_key_revoke(org=org, actor=admin, key=old_key)
    _, plaintext = services.agent_key_create(
        org=org, actor=admin, agent=agent, name="demo", expires_in_days=30
    )

    ctx.org, ctx.admin, ctx.member, ctx.agent, ctx.agent_key = org, admin, member, agent, plaintext
    ctx.admin_password = admin_password
    ctx.summary.update(
        {
            "url": f"{settings.SITE_URL}/o/{org.slug}/",
            "organization": org.slug,
            "admin": {
                "email": ADMIN_EMAIL,
                "password": admin_password or "(unchanged: set on first run)",
            },
            "member": {
                "email": MEMBER_EMAIL,
                "password": member_password or "(unchanged: set on first run)",
            },
            "agent": agent.slug,
            "mcp_url": f"{settings.SITE_URL}/mcp/{org.slug}/",
            "agent_key": plaintext,
        }
    )
