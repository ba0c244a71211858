"""Reads of the policies app, including the gateway's two entry points:

- `compiled_policy_for(org)`: the organization's compiled policy, from a per-process cache
  keyed by (org id, policy_version). The version comes from the cache mirror that
  `org_bump_policy_version` writes on commit (one cache read, no database) with a database
  fallback when the mirror is missing; a new version recompiles.
- `principal_for_agent(agent)`: the engine's `Principal` for an authenticated agent.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db.models import QuerySet

from policies.engine import CompiledPolicy, compile
from policies.models import Policy, PolicyRevision, ToolGroup
from policies.snapshot import build_snapshot
from policies.specs import policy_spec
from policies.types import PolicySpec, Principal
from tenants.models import Agent, Organization
from tenants.services import policy_version_cache_key

# --------------------------------------------------------------------------- rows


def policies_for_org(*, org: Organization) -> QuerySet[Policy]:
    return Policy.objects.for_org(org).select_related("updated_by").order_by("name")


def policy_get(*, org: Organization, id: Any) -> Policy:
    """The org's policy with this id; 404 for a missing one and another org's alike."""
    return Policy.objects.select_related("updated_by", "created_by").get_for_org_or_404(org, pk=id)


def policy_by_name(*, org: Organization, name: str) -> Policy | None:
    return Policy.objects.for_org(org).filter(name=name).first()


def tool_groups_for_org(*, org: Organization) -> QuerySet[ToolGroup]:
    return ToolGroup.objects.for_org(org).select_related("updated_by").order_by("slug")


def tool_group_get(*, org: Organization, id: Any) -> ToolGroup:
    """The org's tool group with this id; 404 for a missing one and another org's alike."""
    return ToolGroup.objects.select_related("updated_by").get_for_org_or_404(org, pk=id)


def revisions_for_policy(*, policy: Policy, limit: int = 50) -> list[PolicyRevision]:
    return list(
        PolicyRevision.objects.for_org(policy.organization)
        .filter(policy=policy)
        .select_related("actor")
        .order_by("-id")[:limit]
    )


def revisions_for_tool_group(*, group: ToolGroup, limit: int = 50) -> list[PolicyRevision]:
    return list(
        PolicyRevision.objects.for_org(group.organization)
        .filter(tool_group=group)
        .select_related("actor")
        .order_by("-id")[:limit]
    )


def live_specs(*, org: Organization, enabled_only: bool = True) -> list[PolicySpec]:
    """The org's stored policies as engine specs, in name order (disabled ones left out)."""
    rows = Policy.objects.for_org(org).order_by("name")
    if enabled_only:
        rows = rows.filter(enabled=True)
    return [policy_spec(row) for row in rows]


# --------------------------------------------------------------------------- compiled policy


@dataclass(frozen=True, slots=True)
class _Cached:
    version: int
    compiled: CompiledPolicy


# Keyed by (id, created_at): an id a deleted organization leaves behind and a new one reuses
# (SQLite does) must never serve the old organization's compiled policy.
_compiled: dict[tuple[int, Any], _Cached] = {}
_compile_lock = threading.Lock()


def current_policy_version(org_id: int) -> int:
    """The org's policy_version: the cache mirror, or the database when the mirror is empty."""
    key = policy_version_cache_key(org_id)
    version = cache.get(key)
    if version is None:
        version = Organization.objects.values_list("policy_version", flat=True).get(pk=org_id)
        # `add`, not `set`: never overwrite a newer stamp a committing writer just mirrored.
        cache.add(key, version, timeout=None)
    return int(version)


def compile_org(org: Organization, *, version: int) -> CompiledPolicy:
    """Compile the org's enabled policies against its approved catalog (database reads)."""
    return compile(
        build_snapshot(org),
        live_specs(org=org),
        version=version,
        org_id=org.pk,
        # A pin conflict that slipped in (e.g. through a catalog change) denies the tools it
        # touches instead of taking the whole organization's gateway down.
        strict=False,
    )


def compiled_policy_for(org: Organization) -> CompiledPolicy:
    """The org's compiled policy. No database work while nothing changed (one cache read).

    The version is read before the rows, so a change committed during a compile leaves a
    compiled policy stamped with the older version, which the next call replaces.
    """
    version = current_policy_version(org.pk)
    key = (org.pk, org.created_at)
    cached = _compiled.get(key)
    if cached is not None and cached.version == version:
        return cached.compiled
    with _compile_lock:
        cached = _compiled.get(key)
        if cached is not None and cached.version == version:
            return cached.compiled
        compiled = compile_org(org, version=version)
        _compiled[key] = _Cached(version=version, compiled=compiled)
        return compiled


def forget_compiled_policies() -> None:
    """Drop this process's compiled policies (tests, and after a cache flush)."""
    _compiled.clear()


def principal_for_agent(agent: Agent) -> Principal:
    """The engine's view of an agent: its slug, tags, team and the user it acts for.

    Teams are the agent's own team only (not the teams of the user it acts for): a team
    subject grants to the agents a team owns, never to every agent one of its members runs.
    Pass an agent loaded with `select_related("team", "acting_for")` to avoid extra queries.
    """
    team = agent.team if agent.team_id else None
    user = agent.acting_for if agent.acting_for_id else None
    tags = agent.tags if isinstance(agent.tags, list) else []
    return Principal(
        org_id=agent.organization_id,
        agent_slug=agent.slug,
        agent_id=agent.pk,
        agent_tags=frozenset(t for t in tags if isinstance(t, str)),
        team_slugs=frozenset({team.slug}) if team is not None else frozenset(),
        user_email=user.email.lower() if user is not None else None,
        user_id=user.pk if user is not None else None,
    )
