"""Conversions between engine specs and what the rows store.

A policy row stores one `PolicySpec` twice, both derived from it at every write:

- `spec`: the plain mapping of the YAML format (`policy_to_mapping`), for the API and lists;
- `source_yaml`: the canonical YAML `export_document` writes for it alone.

Reading a row back parses `source_yaml`, not `spec`: Postgres `jsonb` rewrites numbers (a
float `1e+16` comes back as the integer `10000000000000000`), so the JSON column cannot say
whether a pinned value or a range bound was written as a float; the text can, and
`parse_document` reads an export back equal (tested). A row without text (never written by
these services) falls back to `policy_from_mapping(spec)`, which runs the same checks as an
uploaded file. The row's `enabled` column is authoritative for the flag.

Parsed specs are cached per process by their text: a spec is immutable and the text fully
determines it, so the cache can never serve a stale policy.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import Any

from policies.document import (
    export_document,
    parse_document,
    policy_from_mapping,
    policy_to_mapping,
)
from policies.models import Policy, ToolGroup
from policies.types import PolicyDocument, PolicySpec, ToolGroupSpec


def spec_yaml(spec: PolicySpec) -> str:
    """The canonical YAML of one policy (the short form)."""
    return export_document(PolicyDocument(policies=(spec,)))


def spec_to_data(spec: PolicySpec) -> dict[str, Any]:
    """The plain mapping of one policy, as stored in `Policy.spec` (JSON)."""
    return policy_to_mapping(spec)


def spec_from_data(data: dict[str, Any]) -> PolicySpec:
    """Read a stored mapping back with the checks of an uploaded file (no YAML in between, so
    no YAML typing rule can turn a JSON number into a string)."""
    return policy_from_mapping(data)


@lru_cache(maxsize=4096)
def _spec_from_yaml(text: str) -> PolicySpec:
    return parse_document(text).policies[0]


def policy_spec(policy: Policy) -> PolicySpec:
    """The spec a row holds, exactly as it was written (see the module docstring)."""
    spec = _spec_from_yaml(policy.source_yaml) if policy.source_yaml else None
    if spec is None:
        spec = spec_from_data(policy.spec)
    if spec.enabled != policy.enabled:
        spec = replace(spec, enabled=policy.enabled)
    return spec


def policy_yaml(policy: Policy) -> str:
    """The canonical YAML of a row's policy (what the editor shows and the API returns)."""
    return spec_yaml(policy_spec(policy))


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
