"""Conversions between engine specs and what the rows store, built on the document format.

A policy row stores its spec as the plain mapping of the YAML format (`spec`) and as the YAML
text `export_document` writes for it alone (`source_yaml`). Both are derived from one
`PolicySpec`, and reading a row back goes through `parse_document`, so a row can never hold
something the YAML format could not express.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from policies.document import export_document, parse_document
from policies.models import Policy, ToolGroup
from policies.types import PolicyDocument, PolicySpec, ToolGroupSpec


def spec_yaml(spec: PolicySpec) -> str:
    """The canonical YAML of one policy (the short form)."""
    return export_document(PolicyDocument(policies=(spec,)))


def spec_to_data(spec: PolicySpec) -> dict[str, Any]:
    """The plain mapping of one policy, as stored in `Policy.spec` (JSON)."""
    data = yaml.safe_load(spec_yaml(spec))
    return data if isinstance(data, dict) else {}


def spec_from_data(data: dict[str, Any]) -> PolicySpec:
    """Read a stored mapping back (JSON is YAML; the same checks as an uploaded file apply)."""
    return parse_document(json.dumps(data, ensure_ascii=False)).policies[0]


def policy_spec(policy: Policy) -> PolicySpec:
    return spec_from_data(policy.spec)


def group_spec(group: ToolGroup) -> ToolGroupSpec:
    return ToolGroupSpec(slug=group.slug, tools=tuple(group.tools))


def org_document(
    policies: list[Policy], groups: list[ToolGroup], *, names: set[str] | None = None
) -> PolicyDocument:
    """The document of these rows (groups by slug, policies by name), optionally limited to
    the given policy names and group slugs."""
    return PolicyDocument(
        tool_groups=tuple(
            group_spec(g)
            for g in sorted(groups, key=lambda g: g.slug)
            if names is None or g.slug in names
        ),
        policies=tuple(
            policy_spec(p)
            for p in sorted(policies, key=lambda p: p.name)
            if names is None or p.name in names
        ),
    )
