"""Writes for tenants. Each service checks the actor's permission, changes rows in one
transaction, records an audit event in that same transaction, and schedules side effects
(mail) on commit."""

import logging
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail as _send
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from tenants import secrets
from tenants.errors import PermissionDeniedError, TenantError
from tenants.events import membership_ended, record_event
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
from tenants.permissions import Perm, Role, can_assign_role, role_has

MAX_KEY_TTL_DAYS = 3650
logger = logging.getLogger(__name__)


def require_perm(*, org: Organization, actor: User, perm: Perm) -> Membership:
    """The actor's membership if their role grants `perm`; PermissionDeniedError otherwise."""
    membership = Membership.objects.filter(organization=org, user=actor).first()
    if membership is None or not actor.is_active:
        raise PermissionDeniedError("You are not a member of this organization.")
    if not role_has(membership.role, perm):
        raise PermissionDeniedError(
            f"Your role ({membership.get_role_display()}) does not allow this "
            f"({perm.value.replace('_', ' ')})."
        )
    return membership


# --- Organizations ---------------------------------------------------------------------------


@transaction.atomic
def org_create(*, name: str, slug: str, owner: User) -> Organization:
    """Create an organization with `owner` as its first owner."""
    if Organization.objects.filter(slug=slug).exists():
        raise TenantError(f"The slug '{slug}' is taken: choose another.", field="slug")
    org = Organization(name=name, slug=slug)
    org.full_clean()
    org.save()
    Membership.objects.create(organization=org, user=owner, role=Role.OWNER)
    record_event(org=org, action="org.created", actor=owner, target=org, details={"slug": slug})
    return org


def org_bump_policy_version(*, org: Organization) -> None:
    """Mark the org's compiled policy stale. Call inside the transaction that changes the approved
    catalog or the policies; the cache mirror is updated once that transaction commits."""
    Organization.objects.filter(pk=org.pk).update(policy_version=F("policy_version") + 1)

    def _mirror() -> None:
        version = Organization.objects.values_list("policy_version", flat=True).get(pk=org.pk)
        cache.set(policy_version_cache_key(org.pk), version, timeout=None)

    transaction.on_commit(_mirror)


def policy_version_cache_key(org_id: int) -> str:
    return f"policy-version:{org_id}"


# --- Members and invitations ----------------------------------------------------------------


def _owner_count(org: Organization) -> int:
    return Membership.objects.for_org(org).filter(role=Role.OWNER).count()


@transaction.atomic
def membership_change_role(
    *, org: Organization, actor: User, membership: Membership, role: str
) -> Membership:
    actor_membership = require_perm(org=org, actor=actor, perm=Perm.MANAGE_MEMBERS)
    if role not in Role.values:
        raise TenantError(
            f"'{role}' is not a role. Choose one of: {', '.join(Role.values)}.", field="role"
        )
    membership = Membership.objects.select_for_update().get(pk=membership.pk, organization=org)
    if not can_assign_role(actor_membership.role, role) or not can_assign_role(
        actor_membership.role, membership.role
    ):
        raise PermissionDeniedError("Only an owner can grant or take away the owner role.")
    if membership.role == role:
        return membership
    if membership.role == Role.OWNER and _owner_count(org) <= 1:
        raise TenantError(
            "An organization needs at least one owner: make someone else owner first."
        )
    before = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    record_event(
        org=org,
        action="membership.role_changed",
        actor=actor,
        target=membership,
        target_label=membership.user.email,
        details={"before": before, "after": role, "user": membership.user.email},
    )
    return membership


@transaction.atomic
def membership_remove(*, org: Organization, actor: User, membership: Membership) -> None:
    """Remove a member (or let a member leave). Ends their agents' delegation and lets higher
    apps (credentials) revoke their upstream grants in the same transaction."""
    leaving = membership.user_id == actor.pk
    if not leaving:
        actor_membership = require_perm(org=org, actor=actor, perm=Perm.MANAGE_MEMBERS)
        if not can_assign_role(actor_membership.role, membership.role):
            raise PermissionDeniedError("Only an owner can remove an owner.")
    membership = Membership.objects.select_for_update().get(pk=membership.pk, organization=org)
    if membership.role == Role.OWNER and _owner_count(org) <= 1:
        raise TenantError(
            "The last owner cannot leave or be removed: make someone else owner first."
        )
    user = membership.user
    disabled = list(
        Agent.objects.for_org(org)
        .filter(acting_for=user, is_active=True)
        .values_list("slug", flat=True)
    )
    Agent.objects.for_org(org).filter(acting_for=user, is_active=True).update(is_active=False)
    for team in Team.objects.for_org(org).filter(members=user):
        team.members.remove(user)
    membership.delete()
    record_event(
        org=org,
        action="membership.left" if leaving else "membership.removed",
        actor=actor,
        target_type="tenants.membership",
        target_id=str(user.pk),
        target_label=user.email,
        details={"user": user.email, "role": membership.role, "agents_disabled": disabled},
    )
    membership_ended(org=org, user=user, actor=actor)


@transaction.atomic
def invitation_create(
    *, org: Organization, actor: User, email: str, role: str
) -> tuple[Invitation, str]:
    """Invite an email address. Returns the invitation and the accept URL, which holds the only
    copy of the token (we store its hash): show it once and mail it."""
    actor_membership = require_perm(org=org, actor=actor, perm=Perm.MANAGE_MEMBERS)
    email = email.strip().lower()
    if role not in Role.values:
        raise TenantError(f"'{role}' is not a role.", field="role")
    if not can_assign_role(actor_membership.role, role):
        raise PermissionDeniedError("Only an owner can invite someone as owner.")
    if Membership.objects.for_org(org).filter(user__email__iexact=email).exists():
        raise TenantError(f"{email} is already a member of {org.name}.", field="email")
    now = timezone.now()
    # A new invitation for the same address replaces any pending one.
    Invitation.objects.for_org(org).filter(
        email=email, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
    ).update(revoked_at=now)
    token, digest = secrets.new_token()
    invitation = Invitation.objects.create(
        organization=org,
        email=email,
        role=role,
        token_hash=digest,
        invited_by=actor,
        expires_at=now + timedelta(hours=settings.INVITATION_TTL_HOURS),
    )
    url = f"{settings.SITE_URL}/invite/{token}/"
    record_event(
        org=org,
        action="invitation.created",
        actor=actor,
        target=invitation,
        target_label=email,
        details={"email": email, "role": role, "expires_at": invitation.expires_at.isoformat()},
    )

    def _mail() -> None:
        # A mail failure must not undo the invitation: the link is also shown to the inviter.
        try:
            _send(
                subject=f"You are invited to {org.name} on the MCP gateway",
                message=(
                    f"{actor.display_name} invited you to join {org.name} as {role}.\n\n"
                    f"Accept within {settings.INVITATION_TTL_HOURS} hours: {url}\n"
                ),
                from_email=settings.DEFAULT_FROM_EMAIL,
                recipient_list=[email],
            )
        except Exception:
            logger.exception("Could not mail the invitation for %s", email)

    transaction.on_commit(_mail)
    return invitation, url


def invitation_for_token(token: str) -> Invitation | None:
    if not token or len(token) > 100:
        return None
    return (
        Invitation.objects.select_related("organization")
        .filter(token_hash=secrets.hash_secret(token))
        .first()
    )


@transaction.atomic
def invitation_accept(*, token: str, user: User) -> Membership:
    """Accept an invitation as `user`, whose email must be the invited one. Single use."""
    invitation = invitation_for_token(token)
    if invitation is None:
        raise TenantError("This invitation link is not valid. Ask for a new one.")
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    status = invitation.status
    if status != "pending":
        raise TenantError(f"This invitation has been {status}. Ask an admin for a new one.")
    if invitation.email.lower() != user.email.lower():
        raise TenantError(
            f"This invitation is for {invitation.email}; you are signed in as {user.email}."
        )
    org = invitation.organization
    try:
        with transaction.atomic():
            membership = Membership.objects.create(
                organization=org, user=user, role=invitation.role
            )
    except IntegrityError as exc:
        raise TenantError(f"You are already a member of {org.name}.") from exc
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    record_event(
        org=org,
        action="invitation.accepted",
        actor=user,
        target=invitation,
        target_label=invitation.email,
        details={"role": invitation.role},
    )
    return membership


@transaction.atomic
def invitation_revoke(*, org: Organization, actor: User, invitation: Invitation) -> Invitation:
    require_perm(org=org, actor=actor, perm=Perm.MANAGE_MEMBERS)
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk, organization=org)
    if invitation.status != "pending":
        raise TenantError(f"This invitation is already {invitation.status}.")
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    record_event(
        org=org,
        action="invitation.revoked",
        actor=actor,
        target=invitation,
        target_label=invitation.email,
    )
    return invitation


# --- Teams ----------------------------------------------------------------------------------


@transaction.atomic
def team_create(*, org: Organization, actor: User, name: str, slug: str) -> Team:
    require_perm(org=org, actor=actor, perm=Perm.MANAGE_TEAMS)
    if Team.objects.for_org(org).filter(slug=slug).exists():
        raise TenantError(f"A team with the slug '{slug}' exists already.", field="slug")
    team = Team(organization=org, name=name, slug=slug)
    team.full_clean()
    team.save()
    record_event(org=org, action="team.created", actor=actor, target=team)
    return team


@transaction.atomic
def team_set_members(*, org: Organization, actor: User, team: Team, users: list[User]) -> Team:
    require_perm(org=org, actor=actor, perm=Perm.MANAGE_TEAMS)
    member_ids = set(Membership.objects.for_org(org).values_list("user_id", flat=True))
    strangers = [u.email for u in users if u.pk not in member_ids]
    if strangers:
        raise TenantError(
            f"Not members of this organization: {', '.join(strangers)}.", field="members"
        )
    before = sorted(team.members.values_list("email", flat=True))
    team.members.set(users)
    after = sorted(u.email for u in users)
    record_event(
        org=org,
        action="team.members_changed",
        actor=actor,
        target=team,
        details={"before": before, "after": after},
    )
    return team


# --- Agents and keys ------------------------------------------------------------------------


def _check_agent_refs(org: Organization, acting_for: User | None, team: Team | None) -> None:
    if (
        acting_for is not None
        and not Membership.objects.for_org(org).filter(user=acting_for).exists()
    ):
        raise TenantError(
            "An agent can only act for a member of this organization.", field="acting_for"
        )
    if team is not None and team.organization_id != org.pk:
        raise TenantError("That team is not in this organization.", field="team")


def _clean_tags(tags: list[str] | None) -> list[str]:
    cleaned = sorted({t.strip().lower() for t in (tags or []) if t and t.strip()})
    for tag in cleaned:
        if len(tag) > 40 or not all(c.isalnum() or c in "-_." for c in tag):
            raise TenantError(
                f"Tag '{tag}' is not valid: use letters, digits, - _ . (40 at most).", field="tags"
            )
    if len(cleaned) > 20:
        raise TenantError("An agent has at most 20 tags.", field="tags")
    return cleaned


@transaction.atomic
def agent_create(
    *,
    org: Organization,
    actor: User,
    name: str,
    slug: str,
    description: str = "",
    acting_for: User | None = None,
    team: Team | None = None,
    tags: list[str] | None = None,
) -> Agent:
    require_perm(org=org, actor=actor, perm=Perm.MANAGE_AGENTS)
    _check_agent_refs(org, acting_for, team)
    if Agent.objects.for_org(org).filter(slug=slug).exists():
        raise TenantError(f"An agent with the slug '{slug}' exists already.", field="slug")
    agent = Agent(
        organization=org,
        name=name,
        slug=slug,
        description=description,
        acting_for=acting_for,
        team=team,
        tags=_clean_tags(tags),
        created_by=actor,
    )
    agent.full_clean()
    agent.save()
    record_event(
        org=org,
        action="agent.created",
        actor=actor,
        target=agent,
        details={
            "slug": slug,
            "acting_for": acting_for.email if acting_for else None,
            "team": team.slug if team else None,
            "tags": agent.tags,
        },
    )
    return agent


_AGENT_FIELDS = ("name", "description", "acting_for", "team", "tags", "is_active")


@transaction.atomic
def agent_update(*, org: Organization, actor: User, agent: Agent, **changes: object) -> Agent:
    require_perm(org=org, actor=actor, perm=Perm.MANAGE_AGENTS)
    unknown = set(changes) - set(_AGENT_FIELDS)
    if unknown:
        raise TenantError(f"Unknown fields: {', '.join(sorted(unknown))}.")
    agent = Agent.objects.select_for_update().get(pk=agent.pk, organization=org)
    _check_agent_refs(
        org, changes.get("acting_for", agent.acting_for), changes.get("team", agent.team)
    )  # type: ignore[arg-type]
    if "tags" in changes:
        changes["tags"] = _clean_tags(changes["tags"])  # type: ignore[arg-type]
    before: dict[str, object] = {}
    after: dict[str, object] = {}
    for field, value in changes.items():
        old = getattr(agent, field)
        if old != value:
            before[field] = str(old) if hasattr(old, "pk") else old
            after[field] = str(value) if hasattr(value, "pk") else value
            setattr(agent, field, value)
    if not after:
        return agent
    agent.full_clean()
    agent.save(update_fields=list(after))
    record_event(
        org=org,
        action="agent.updated",
        actor=actor,
        target=agent,
        details={"before": before, "after": after},
    )
    return agent


@transaction.atomic
def agent_key_create(
    *,
    org: Organization,
    actor: User,
    agent: Agent,
    name: str = "",
    expires_in_days: int | None = None,
) -> tuple[AgentKey, str]:
    """Issue a key for an agent. Returns the row and the plaintext key, which is never stored:
    show it once."""
    require_perm(org=org, actor=actor, perm=Perm.MANAGE_AGENTS)
    if agent.organization_id != org.pk:
        raise TenantError("That agent is not in this organization.")
    if not agent.is_active:
        raise TenantError("This agent is disabled: enable it before issuing keys.")
    if expires_in_days is not None and not (1 <= expires_in_days <= MAX_KEY_TTL_DAYS):
        raise TenantError(
            f"Expiry must be between 1 and {MAX_KEY_TTL_DAYS} days.", field="expires_in_days"
        )
    issued = secrets.issue_secret(secrets.AGENT_KEY_KIND)
    expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
    key = AgentKey.objects.create(
        organization=org,
        agent=agent,
        name=name,
        prefix=issued.prefix,
        key_hash=issued.digest,
        created_by=actor,
        expires_at=expires_at,
    )
    record_event(
        org=org,
        action="agent_key.created",
        actor=actor,
        agent=agent,
        target=key,
        details={
            "prefix": key.prefix,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return key, issued.plaintext


@transaction.atomic
def agent_key_revoke(*, org: Organization, actor: User, key: AgentKey) -> AgentKey:
    require_perm(org=org, actor=actor, perm=Perm.MANAGE_AGENTS)
    key = AgentKey.objects.select_for_update().get(pk=key.pk, organization=org)
    if key.revoked_at:
        raise TenantError("This key is already revoked.")
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    record_event(
        org=org,
        action="agent_key.revoked",
        actor=actor,
        agent=key.agent,
        target=key,
        details={"prefix": key.prefix},
    )
    return key


# --- Personal access tokens (REST API) -------------------------------------------------------


@transaction.atomic
def personal_token_create(
    *, user: User, name: str, expires_in_days: int | None = None
) -> tuple[PersonalAccessToken, str]:
    if expires_in_days is not None and not (1 <= expires_in_days <= MAX_KEY_TTL_DAYS):
        raise TenantError(
            f"Expiry must be between 1 and {MAX_KEY_TTL_DAYS} days.", field="expires_in_days"
        )
    issued = secrets.issue_secret(secrets.PERSONAL_TOKEN_KIND)
    expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
    token = PersonalAccessToken.objects.create(
        user=user, name=name, prefix=issued.prefix, token_hash=issued.digest, expires_at=expires_at
    )
    record_event(
        org=None,
        action="personal_token.created",
        actor=user,
        target=token,
        details={"prefix": token.prefix},
    )
    return token, issued.plaintext


@transaction.atomic
def personal_token_revoke(*, user: User, token: PersonalAccessToken) -> PersonalAccessToken:
    token = PersonalAccessToken.objects.select_for_update().get(pk=token.pk, user=user)
    if token.revoked_at:
        raise TenantError("This token is already revoked.")
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    record_event(
        org=None,
        action="personal_token.revoked",
        actor=user,
        target=token,
        details={"prefix": token.prefix},
    )
    return token
