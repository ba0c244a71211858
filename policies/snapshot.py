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


def build_snapshot(org: Organization) -> CatalogSnapshot:
    """The organization's approved catalog, tool groups and known subjects, as engine input."""
    return CatalogSnapshot(
        tools=tuple(catalog_tool(row) for row in approved_tools_for_org(org=org)),
        tool_groups=tool_groups_for_snapshot(org),
        agent_slugs=frozenset(Agent.objects.for_org(org).values_list("slug", flat=True)),
        team_slugs=frozenset(Team.objects.for_org(org).values_list("slug", flat=True)),
        user_emails=frozenset(
            e.lower() for e in Membership.objects.for_org(org).values_list("user__email", flat=True)
        ),
        agent_tags=frozenset(_tags(Agent.objects.for_org(org).values_list("tags", flat=True))),
    )
