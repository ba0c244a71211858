"""Build the engine's `CatalogSnapshot` of one organization from the database.

The snapshot holds only this organization's catalog: a reference to another organization's
server or tool is, to the engine and to validation, simply unknown (and says nothing about
what other organizations have).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from catalog.selectors import approved_tools_for_org
from policies.models import ToolGroup
from policies.types import CatalogSnapshot, CatalogTool
from tenants.models import Agent, Membership, Organization, Team


def catalog_tool(row: Mapping[str, Any]) -> CatalogTool:
    """One engine tool from one row of `catalog.selectors.approved_tools_for_org`.

    Those rows are the serving servers' approved versions only; a quarantined tool (drifted
    definition, or connection settings changed since approval) is kept, not callable, so the
    engine can say why it is refused.
    """
    return CatalogTool(
        server=row["server_slug"],
        name=row["tool_name"],
        title=row.get("title") or "",
        description=row.get("description") or "",
        input_schema=row.get("input_schema") or {},
        annotations=row.get("annotations") or {},
        definition_hash=row.get("definition_hash") or "",
        server_version_id=row.get("version_id"),
        callable=not row.get("quarantined", True),
    )


def tool_groups_for_snapshot(org: Organization) -> dict[str, tuple[str, ...]]:
    return {
        slug: tuple(tools)
        for slug, tools in ToolGroup.objects.for_org(org).values_list("slug", "tools")
    }


def _tags(rows: Iterable[Any]) -> set[str]:
    tags: set[str] = set()
    for value in rows:
        if isinstance(value, list):
            tags.update(t for t in value if isinstance(t, str))
    return tags


# (org id, org created_at) -> (policy_version, tools). Every change to the approved catalog
# bumps `policy_version` in its own transaction, so a version read from the database names
# one catalog: the tools can be reused while it stays. Subjects and tool groups are not
# cached (creating an agent does not bump the version); they are a few cheap queries.
_tools_cache: dict[tuple[int, Any], tuple[int, tuple[CatalogTool, ...]]] = {}
_TOOLS_CACHE_ORGS = 64


def _catalog_tools(org: Organization, *, cached: bool) -> tuple[CatalogTool, ...]:
    if not cached:
        return tuple(catalog_tool(row) for row in approved_tools_for_org(org=org))
    version = Organization.objects.values_list("policy_version", flat=True).get(pk=org.pk)
    key = (org.pk, org.created_at)
    hit = _tools_cache.get(key)
    if hit is not None and hit[0] == version:
        return hit[1]
    tools = tuple(catalog_tool(row) for row in approved_tools_for_org(org=org))
    if len(_tools_cache) >= _TOOLS_CACHE_ORGS:
        _tools_cache.clear()
    _tools_cache[key] = (version, tools)
    return tools


def build_snapshot(org: Organization, *, cached_catalog: bool = False) -> CatalogSnapshot:
    """The organization's approved catalog, tool groups and known subjects, as engine input.

    `cached_catalog` reuses this process's copy of the approved tools while the organization's
    `policy_version` (read from the database) is unchanged: for the editor's validation as
    you type. Writes build from the database (they hold the organization's lock).
    """
    return CatalogSnapshot(
        tools=_catalog_tools(org, cached=cached_catalog),
        tool_groups=tool_groups_for_snapshot(org),
        agent_slugs=frozenset(Agent.objects.for_org(org).values_list("slug", flat=True)),
        team_slugs=frozenset(Team.objects.for_org(org).values_list("slug", flat=True)),
        user_emails=frozenset(
            e.lower() for e in Membership.objects.for_org(org).values_list("user__email", flat=True)
        ),
        agent_tags=frozenset(_tags(Agent.objects.for_org(org).values_list("tags", flat=True))),
    )
