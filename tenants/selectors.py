"""Reads for tenants. Single-object access functions answer 404 for missing and forbidden alike."""

from django.db.models import QuerySet
from django.http import Http404

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


def orgs_for_user(*, user: User) -> QuerySet[Organization]:
    if not user.is_authenticated:
        return Organization.objects.none()
    return Organization.objects.filter(memberships__user=user).order_by("name")


def membership_get(*, org: Organization, user: User) -> Membership | None:
    if not user.is_authenticated or not user.is_active:
        return None
    return Membership.objects.filter(organization=org, user=user).first()


def org_membership_for_slug(*, user: User, slug: str) -> tuple[Organization, Membership]:
    """The organization named in the URL and the user's membership of it, or 404.

    An organization the user does not belong to looks exactly like one that does not exist.
    """
    if not user.is_authenticated or not user.is_active:
        raise Http404("No such organization.")
    membership = (
        Membership.objects.select_related("organization")
        .filter(organization__slug=slug, user=user)
        .first()
    )
    if membership is None:
        raise Http404("No such organization.")
    return membership.organization, membership


def members_for_org(*, org: Organization) -> QuerySet[Membership]:
    return Membership.objects.for_org(org).select_related("user").order_by("user__email")


def member_get(*, org: Organization, id: int) -> Membership:
    return Membership.objects.select_related("user").get_for_org_or_404(org, pk=id)


def invitations_for_org(*, org: Organization) -> QuerySet[Invitation]:
    return Invitation.objects.for_org(org).select_related("invited_by").order_by("-created_at")


def invitation_get(*, org: Organization, id: int) -> Invitation:
    return Invitation.objects.get_for_org_or_404(org, pk=id)


def teams_for_org(*, org: Organization) -> QuerySet[Team]:
    return Team.objects.for_org(org).prefetch_related("members").order_by("name")


def team_get(*, org: Organization, id: int) -> Team:
    return Team.objects.get_for_org_or_404(org, pk=id)


def agents_for_org(*, org: Organization) -> QuerySet[Agent]:
    return Agent.objects.for_org(org).select_related("acting_for", "team").order_by("name")


def agent_get(*, org: Organization, id: int) -> Agent:
    return Agent.objects.select_related("acting_for", "team").get_for_org_or_404(org, pk=id)


def agent_keys_for_agent(*, agent: Agent) -> QuerySet[AgentKey]:
    return AgentKey.objects.for_org(agent.organization).filter(agent=agent).order_by("-created_at")


def agent_key_get(*, org: Organization, agent: Agent, id: int) -> AgentKey:
    return AgentKey.objects.select_related("agent").get_for_org_or_404(org, pk=id, agent=agent)


def tokens_for_user(*, user: User) -> QuerySet[PersonalAccessToken]:
    return PersonalAccessToken.objects.filter(user=user).order_by("-created_at")


def token_get(*, user: User, id: int) -> PersonalAccessToken:
    try:
        return PersonalAccessToken.objects.get(user=user, pk=id)
    except (PersonalAccessToken.DoesNotExist, ValueError, TypeError) as exc:
        raise Http404("No such token.") from exc
