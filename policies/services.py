"""Writes of the policies app: apply a YAML document, save / enable / delete one policy, and
tool group CRUD.

Every write goes through one path (`_commit`): build the organization's policy set as it would
be after the change, validate it (the document's references against the approved catalog, and
a strict compile of everything that would be live, so two policies that pin one argument to
different values cannot both go in), then, in one transaction with the organization's row
locked: write the rows, a `PolicyRevision` and an audit event per changed object (before and
after), and bump `policy_version` so every gateway process recompiles. Bad input raises
`PolicyValidationError` with every problem and its location, and changes nothing.

`actor=None` means a trusted system caller (the `policy_apply` command, the demo seed): no
permission check, and the audit trail records no human.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

import yaml
from django.db import transaction
from django.utils import timezone

import audit
from policies.checks import location
from policies.document import diff_documents, parse_document, validate_document
from policies.engine import compile
from policies.errors import (
    PolicyCompileError,
    PolicyDocumentError,
    PolicyError,
    ValidationError,
)
from policies.models import (
    Policy,
    PolicyRevision,
    RevisionAction,
    RevisionKind,
    RevisionSource,
    ToolGroup,
)
from policies.snapshot import build_snapshot
from policies.specs import group_spec, policy_spec, spec_to_data, spec_yaml
from policies.types import CatalogSnapshot, PolicyDocument, PolicySpec, ToolGroupSpec
from tenants.models import Organization, User
from tenants.permissions import Perm
from tenants.services import org_bump_policy_version, require_perm


def _line_map(text: str | bytes) -> dict[str, int]:
    """Location -> 1-based line of every node of a (parsed, so already safe) YAML text."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    lines: dict[str, int] = {}
    stack: list[tuple[str, Any]] = [("", root)]
    while stack:
        where, node = stack.pop()
        if node is None:
            continue
        lines.setdefault(where, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = str(key.value)
                lines.setdefault(location(where, name), key.start_mark.line + 1)
                stack.append((location(where, name), value))
        elif isinstance(node, yaml.SequenceNode):
            for index, value in enumerate(node.value):
                stack.append((location(where, index), value))
    return lines


def _with_lines(text: str | bytes, problems: list[ValidationError]) -> list[ValidationError]:
    """Catalog validation works on specs, not text: give its problems their line back."""
    if all(p.line is not None for p in problems):
        return problems
    lines = _line_map(text)
    located = []
    for problem in problems:
        line = problem.line
        where = problem.location
        while line is None and where:
            line = lines.get(where)
            cut = max(where.rfind("."), where.rfind("["))
            where = where[:cut] if cut > 0 else ""
        located.append(ValidationError(problem.location, problem.message, problem.severity, line))
    return located


class PolicyValidationError(PolicyDocumentError):
    """The change was refused: `errors` lists every problem with its location."""


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What `policy_apply` found and did. `applied` is False on a dry run or any error."""

    diff: list[str]
    errors: list[ValidationError]
    applied: bool
    dry_run: bool
    warnings: list[ValidationError] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class _Change:
    """One object to create (row None), update (row and new) or delete (new None)."""

    kind: str
    row: Policy | ToolGroup | None
    new: PolicySpec | ToolGroupSpec | None
    name: str = ""
    description: str | None = None


@dataclass
class Plan:
    """The organization's policy set as it would be after some changes, and what is wrong
    with it. `snapshot` and `live_specs` (the enabled policies) are what would compile."""

    changes: list[_Change]
    errors: list[ValidationError]
    warnings: list[ValidationError]
    diff: list[str]
    snapshot: CatalogSnapshot
    live_specs: list[PolicySpec]


def _check_actor(org: Organization, actor: User | None, perm: Perm) -> None:
    if actor is not None:
        require_perm(org=org, actor=actor, perm=perm)


_POLICY_INDEX_RE = re.compile(r"^policies\[(\d+)\]")


def _relocate(
    problem: ValidationError, names: list[str], doc: PolicyDocument | None
) -> ValidationError:
    """Compile errors speak of `policies[i]` of the whole set: say it in the user's terms."""
    match = _POLICY_INDEX_RE.match(problem.location)
    if not match or int(match.group(1)) >= len(names):
        return problem
    name = names[int(match.group(1))]
    rest = problem.location[match.end() :].lstrip(".")
    doc_names = [p.name for p in doc.policies] if doc is not None else []
    if name in doc_names:
        index = doc_names.index(name)
        prefix = "" if doc is not None and doc.is_single_policy else f"policies[{index}]"
        where = f"{prefix}.{rest}" if prefix and rest else (prefix or rest)
        return ValidationError(where, problem.message, problem.severity, problem.line)
    return ValidationError(
        f"(live policy '{name}') {rest}".strip(), problem.message, problem.severity
    )


def _group_users(slug: str, specs: dict[str, PolicySpec]) -> list[str]:
    return [
        name
        for name, spec in specs.items()
        if slug in spec.allow.tool_groups or slug in spec.deny.tool_groups
    ]


def _plan(
    org: Organization,
    changes: list[_Change],
    *,
    doc: PolicyDocument | None,
    live_doc: PolicyDocument | None = None,
    cached_catalog: bool = False,
) -> Plan:
    """Validate the organization's policy set as it would be after `changes`.

    The document's names are checked against the catalog, then everything that would be live
    is compiled once (strictly: pin conflicts and clashing overrides are errors), also when
    the names had errors, so one check reports every problem.
    """
    policy_rows = {p.name: p for p in Policy.objects.for_org(org)}
    group_rows = {g.slug: g for g in ToolGroup.objects.for_org(org)}
    errors: list[ValidationError] = []

    final_groups: dict[str, tuple[str, ...]] = {s: tuple(g.tools) for s, g in group_rows.items()}
    final_specs: dict[str, PolicySpec] = {n: policy_spec(p) for n, p in policy_rows.items()}
    final_enabled: dict[str, bool] = {n: p.enabled for n, p in policy_rows.items()}
    for change in changes:
        if change.kind == RevisionKind.TOOL_GROUP:
            if change.row is not None:
                final_groups.pop(change.row.slug, None)  # type: ignore[union-attr]
            if change.new is not None:
                slug = change.new.slug  # type: ignore[union-attr]
                if slug in final_groups:
                    errors.append(
                        ValidationError("slug", f"a tool group named '{slug}' already exists")
                    )
                final_groups[slug] = change.new.tools  # type: ignore[union-attr]
        else:
            if change.row is not None:
                final_enabled.pop(change.row.name, None)  # type: ignore[union-attr]
                final_specs.pop(change.row.name, None)  # type: ignore[union-attr]
            if change.new is not None:
                name = change.new.name  # type: ignore[union-attr]
                if name in final_specs:
                    errors.append(
                        ValidationError("name", f"a policy named '{name}' already exists")
                    )
                final_specs[name] = change.new  # type: ignore[assignment]
                final_enabled[name] = change.new.enabled  # type: ignore[union-attr]

    deleted_groups = [
        c.row.slug  # type: ignore[union-attr]
        for c in changes
        if c.kind == RevisionKind.TOOL_GROUP and c.row is not None and c.new is None
    ]
    for slug in deleted_groups:
        if slug in final_groups:
            continue
        users = _group_users(slug, final_specs)
        if users:
            errors.append(
                ValidationError(
                    f"toolGroups.{slug}",
                    f"tool group '{slug}' is used by "
                    + ", ".join(f"policy '{u}'" for u in users)
                    + "; remove it from those policies first (deleting it would silently "
                    "drop what they allow or deny)",
                )
            )

    snapshot = replace(build_snapshot(org, cached_catalog=cached_catalog), tool_groups=final_groups)
    warnings: list[ValidationError] = []
    if doc is not None:
        for problem in validate_document(doc, snapshot, compile_check=False):
            (errors if problem.severity == "error" else warnings).append(problem)
    live_names = sorted(n for n in final_specs if final_enabled[n])
    try:
        compiled = compile(
            snapshot,
            [final_specs[n] for n in live_names],
            version=0,
            org_id=org.pk,
            strict=False,
        )
        compile_errors = [p for p in compiled.problems if p.severity == "error"]
    except PolicyCompileError as exc:
        compile_errors = exc.errors
    seen = {(e.location, e.message) for e in errors}
    for problem in compile_errors:
        moved = _relocate(problem, live_names, doc)
        if (moved.location, moved.message) not in seen:
            seen.add((moved.location, moved.message))
            errors.append(moved)
    diff = diff_documents(live_doc, doc) if live_doc is not None and doc is not None else []
    return Plan(
        changes=changes,
        errors=errors,
        warnings=warnings,
        diff=diff,
        snapshot=snapshot,
        live_specs=[final_specs[n] for n in live_names],
    )


# --------------------------------------------------------------------------- writing


def _lock(org: Organization) -> None:
    # Serializes policy writes per organization: two concurrent applies cannot both validate
    # against the old state and then both write.
    Organization.objects.select_for_update().filter(pk=org.pk).first()


def _write(
    org: Organization,
    actor: User | None,
    plan: Plan,
    *,
    source: str,
) -> list[str]:
    """Write the plan's changes (groups first, deletions of policies before groups)."""
    now = timezone.now()
    done: list[tuple[_Change, Any, str, dict | None, dict | None]] = []
    ordered = sorted(
        plan.changes,
        key=lambda c: (
            0 if c.new is not None and c.kind == RevisionKind.TOOL_GROUP else 1,
            2 if c.new is None and c.kind == RevisionKind.TOOL_GROUP else 1,
        ),
    )
    for change in ordered:
        if change.kind == RevisionKind.TOOL_GROUP:
            result = _write_group(org, actor, change, now)
        else:
            result = _write_policy(org, actor, change, now)
        if result is not None:
            done.append((change, *result))
    if not done:
        return []
    org_bump_policy_version(org=org)
    version = Organization.objects.values_list("policy_version", flat=True).get(pk=org.pk)
    lines = []
    for change, row, action, before, after in done:
        kind_label = "tool group" if change.kind == RevisionKind.TOOL_GROUP else "policy"
        name = (after or before or {}).get("slug") or (after or before or {}).get("name", "")
        PolicyRevision.objects.create(
            organization=org,
            policy=row if change.kind == RevisionKind.POLICY and action != "deleted" else None,
            tool_group=row
            if change.kind == RevisionKind.TOOL_GROUP and action != "deleted"
            else None,
            kind=change.kind,
            object_name=name,
            revision=(after or before or {}).get("revision", 1),
            action=action,
            source=source,
            before=before,
            after=after,
            policy_version=version,
            actor=actor,
            created_at=now,
        )
        audit.record(
            org=org,
            action=f"{'tool_group' if change.kind == RevisionKind.TOOL_GROUP else 'policy'}.{action}",
            actor=actor,
            target_type=f"policies.{'toolgroup' if change.kind == RevisionKind.TOOL_GROUP else 'policy'}",
            target_id=row.pk if row is not None else "",
            target_label=name,
            details={
                "source": source,
                "before": before,
                "after": after,
                "policy_version": version,
            },
        )
        lines.append(f"{kind_label} '{name}' {action}")
    return lines


def _write_group(
    org: Organization, actor: User | None, change: _Change, now: Any
) -> tuple[Any, str, dict | None, dict | None] | None:
    row: ToolGroup | None = change.row  # type: ignore[assignment]
    new: ToolGroupSpec | None = change.new  # type: ignore[assignment]
    if new is None:
        assert row is not None
        before = {**row.snapshot(), "revision": row.revision}
        pk = row.pk
        row.delete()
        row.pk = pk
        return row, RevisionAction.DELETED, before, None
    if row is None:
        row = ToolGroup.objects.create(
            organization=org,
            slug=new.slug,
            name=change.name or new.slug,
            description=change.description or "",
            tools=list(new.tools),
            created_by=actor,
            updated_by=actor,
            created_at=now,
            updated_at=now,
        )
        return row, RevisionAction.CREATED, None, {**row.snapshot(), "revision": row.revision}
    before = {**row.snapshot(), "revision": row.revision}
    row.slug = new.slug
    row.tools = list(new.tools)
    if change.name:
        row.name = change.name
    if change.description is not None:
        row.description = change.description
    after_data = row.snapshot()
    if after_data == {k: v for k, v in before.items() if k != "revision"}:
        return None
    row.revision += 1
    row.updated_by = actor
    row.updated_at = now
    row.save(
        update_fields=[
            "slug",
            "name",
            "description",
            "tools",
            "revision",
            "updated_by",
            "updated_at",
        ]
    )
    return row, RevisionAction.UPDATED, before, {**after_data, "revision": row.revision}


def _write_policy(
    org: Organization, actor: User | None, change: _Change, now: Any
) -> tuple[Any, str, dict | None, dict | None] | None:
    row: Policy | None = change.row  # type: ignore[assignment]
    new: PolicySpec | None = change.new  # type: ignore[assignment]
    if new is None:
        assert row is not None
        before = {**row.snapshot(), "revision": row.revision}
        pk = row.pk
        row.delete()
        row.pk = pk
        return row, RevisionAction.DELETED, before, None
    data = spec_to_data(new)
    if row is None:
        row = Policy.objects.create(
            organization=org,
            name=new.name,
            description=new.description,
            enabled=new.enabled,
            spec=data,
            source_yaml=spec_yaml(new),
            created_by=actor,
            updated_by=actor,
            created_at=now,
            updated_at=now,
        )
        return row, RevisionAction.CREATED, None, {**row.snapshot(), "revision": row.revision}
    before = {**row.snapshot(), "revision": row.revision}
    enabled = new.enabled
    if row.source_yaml == spec_yaml(new) and row.name == new.name and row.enabled == enabled:
        return None
    row.name = new.name
    row.description = new.description
    row.enabled = enabled
    row.spec = data
    row.source_yaml = spec_yaml(new)
    row.revision += 1
    row.updated_by = actor
    row.updated_at = now
    row.save(
        update_fields=[
            "name",
            "description",
            "enabled",
            "spec",
            "source_yaml",
            "revision",
            "updated_by",
            "updated_at",
        ]
    )
    return row, RevisionAction.UPDATED, before, {**row.snapshot(), "revision": row.revision}


def _commit(
    *,
    org: Organization,
    actor: User | None,
    changes: list[_Change],
    doc: PolicyDocument | None,
    source: str,
    text: str | bytes | None = None,
) -> list[str]:
    """Validate and write `changes` atomically, or raise PolicyValidationError."""
    with transaction.atomic():
        _lock(org)
        plan = _plan(org, changes, doc=doc)
        if plan.errors:
            raise PolicyValidationError(
                _with_lines(text, plan.errors) if text is not None else plan.errors
            )
        return _write(org, actor, plan, source=source)


# --------------------------------------------------------------------------- apply a document


def _plan_document(org: Organization, doc: PolicyDocument, *, prune: bool) -> Plan:
    policy_rows = {p.name: p for p in Policy.objects.for_org(org)}
    group_rows = {g.slug: g for g in ToolGroup.objects.for_org(org)}
    changes: list[_Change] = []
    for group in doc.tool_groups:
        changes.append(_Change(RevisionKind.TOOL_GROUP, group_rows.get(group.slug), group))
    for spec in doc.policies:
        changes.append(_Change(RevisionKind.POLICY, policy_rows.get(spec.name), spec))
    named_groups = {g.slug for g in doc.tool_groups}
    named_policies = {p.name for p in doc.policies}
    if prune:
        changes += [
            _Change(RevisionKind.POLICY, row, None)
            for name, row in sorted(policy_rows.items())
            if name not in named_policies
        ]
        changes += [
            _Change(RevisionKind.TOOL_GROUP, row, None)
            for slug, row in sorted(group_rows.items())
            if slug not in named_groups
        ]
    live_doc = PolicyDocument(
        tool_groups=tuple(
            group_spec(row)
            for slug, row in sorted(group_rows.items())
            if prune or slug in named_groups
        ),
        policies=tuple(
            policy_spec(row)
            for name, row in sorted(policy_rows.items())
            if prune or name in named_policies
        ),
    )
    return _plan(org, changes, doc=doc, live_doc=live_doc)


def plan_document(*, org: Organization, text: str | bytes, prune: bool = False) -> Plan:
    """Parse and validate a document as `policy_apply` would, without writing (for explain and
    replay against a proposal). Raises PolicyDocumentError when the text does not parse."""
    return _plan_document(org, parse_document(text), prune=prune)


def policy_apply(
    *,
    org: Organization,
    actor: User | None,
    text: str | bytes,
    dry_run: bool,
    prune: bool = False,
    source: str = RevisionSource.YAML,
) -> ApplyResult:
    """Validate a YAML document, diff it against what is live, and (unless `dry_run`) apply it.

    The tool groups and policies in the document are created or replaced; with `prune`, the
    organization's groups and policies that the document does not mention are deleted (the
    document is then the whole policy set, as kept in git). Nothing is written when there is
    any error; the result lists them with their location in the document.
    """
    _check_actor(org, actor, Perm.READ_POLICY if dry_run else Perm.EDIT_POLICY)
    try:
        doc = parse_document(text)
    except PolicyDocumentError as exc:
        return ApplyResult(diff=[], errors=exc.errors, applied=False, dry_run=dry_run)

    with transaction.atomic():
        if not dry_run:
            _lock(org)
        plan = _plan_document(org, doc, prune=prune)
        if plan.errors or dry_run:
            return ApplyResult(
                diff=plan.diff,
                errors=_with_lines(text, plan.errors),
                warnings=_with_lines(text, plan.warnings),
                applied=False,
                dry_run=dry_run,
            )
        done = _write(org, actor, plan, source=source)
        if done:
            audit.record(
                org=org,
                action="policy.applied",
                actor=actor,
                target_type="policies.document",
                target_label=f"{len(doc.policies)} policies, {len(doc.tool_groups)} tool groups",
                details={"source": source, "prune": prune, "changes": done, "diff": plan.diff},
            )
    return ApplyResult(
        diff=plan.diff,
        errors=[],
        warnings=_with_lines(text, plan.warnings),
        applied=True,
        dry_run=False,
        changes=done,
    )


def policy_export(*, org: Organization) -> str:
    """The organization's whole policy set as one YAML document (groups, then policies)."""
    from policies.document import export_document

    document = PolicyDocument(
        tool_groups=tuple(group_spec(g) for g in ToolGroup.objects.for_org(org).order_by("slug")),
        policies=tuple(policy_spec(p) for p in Policy.objects.for_org(org).order_by("name")),
    )
    if not document.policies and not document.tool_groups:
        return ""
    return export_document(document)


# --------------------------------------------------------------------------- one policy


def parse_single_policy(text: str | bytes) -> PolicySpec:
    """The one policy of an editor's YAML (short form, or a long form with one policy and no
    groups); PolicyDocumentError otherwise."""
    doc = parse_document(text)
    if len(doc.policies) != 1 or doc.tool_groups:
        raise PolicyDocumentError(
            [
                ValidationError(
                    "",
                    "the editor holds exactly one policy (no toolGroups); to change several "
                    "policies or groups at once, use Apply YAML",
                )
            ]
        )
    return doc.policies[0]


def policy_check(
    *, org: Organization, text: str | bytes, policy: Policy | None = None
) -> tuple[PolicySpec | None, list[ValidationError], list[ValidationError], list[str]]:
    """Validate an editor's YAML without saving: (spec, errors, warnings, diff against live).

    Used by the editor's validate-as-you-type; the same checks as `policy_save`.
    """
    try:
        spec = parse_single_policy(text)
    except PolicyDocumentError as exc:
        return None, exc.errors, [], []
    doc = PolicyDocument(policies=(spec,))
    live = PolicyDocument(policies=(policy_spec(policy),)) if policy is not None else None
    plan = _plan(
        org,
        [_Change(RevisionKind.POLICY, policy, spec)],
        doc=doc,
        live_doc=live if live is not None else PolicyDocument(),
        cached_catalog=True,
    )
    return spec, _with_lines(text, plan.errors), _with_lines(text, plan.warnings), plan.diff


def policy_save(
    *,
    org: Organization,
    actor: User | None,
    policy: Policy | None = None,
    text: str | bytes | None = None,
    spec: PolicySpec | None = None,
    enabled: bool | None = None,
    source: str = RevisionSource.FORM,
) -> Policy:
    """Create (policy None) or replace one policy from its YAML `text` or a built `spec`.

    The spec's `enabled` (the YAML's `enabled:`, true when absent) decides whether the policy
    is live; `enabled`, when given (the API's field), overrides it.
    """
    _check_actor(org, actor, Perm.EDIT_POLICY)
    if spec is None:
        if text is None:
            raise PolicyError("Give the policy's YAML.", field="text")
        spec = parse_single_policy(text)
    if enabled is not None and spec.enabled != enabled:
        spec = replace(spec, enabled=enabled)
    if policy is not None:
        policy = Policy.objects.get_for_org_or_404(org, pk=policy.pk)
    _commit(
        org=org,
        actor=actor,
        changes=[_Change(RevisionKind.POLICY, policy, spec)],
        doc=PolicyDocument(policies=(spec,)),
        source=source,
        text=text,
    )
    return Policy.objects.for_org(org).get(name=spec.name)


def policy_set_enabled(
    *,
    org: Organization,
    actor: User | None,
    policy: Policy,
    enabled: bool,
    source: str = RevisionSource.FORM,
) -> Policy:
    """Enable or disable a policy (a disabled policy is kept but grants and denies nothing)."""
    _check_actor(org, actor, Perm.EDIT_POLICY)
    policy = Policy.objects.get_for_org_or_404(org, pk=policy.pk)
    spec = replace(policy_spec(policy), enabled=enabled)
    _commit(
        org=org,
        actor=actor,
        changes=[_Change(RevisionKind.POLICY, policy, spec)],
        doc=None,
        source=source,
    )
    policy.refresh_from_db()
    return policy


def policy_delete(
    *, org: Organization, actor: User | None, policy: Policy, source: str = RevisionSource.FORM
) -> None:
    _check_actor(org, actor, Perm.EDIT_POLICY)
    policy = Policy.objects.get_for_org_or_404(org, pk=policy.pk)
    _commit(
        org=org,
        actor=actor,
        changes=[_Change(RevisionKind.POLICY, policy, None)],
        doc=None,
        source=source,
    )


# --------------------------------------------------------------------------- tool groups


def tool_group_save(
    *,
    org: Organization,
    actor: User | None,
    group: ToolGroup | None = None,
    slug: str,
    tools: list[str],
    name: str = "",
    description: str = "",
    source: str = RevisionSource.FORM,
) -> ToolGroup:
    """Create (group None) or update a tool group. Renaming the slug of a group that policies
    use is refused (they would silently lose it)."""
    _check_actor(org, actor, Perm.EDIT_POLICY)
    if group is not None:
        group = ToolGroup.objects.get_for_org_or_404(org, pk=group.pk)
    spec = ToolGroupSpec(slug=slug, tools=tuple(tools))
    changes = [
        _Change(RevisionKind.TOOL_GROUP, group, spec, name=name or slug, description=description)
    ]
    if group is not None and group.slug != slug:
        in_use = _group_users(
            group.slug, {p.name: policy_spec(p) for p in Policy.objects.for_org(org)}
        )
        if in_use:
            raise PolicyValidationError(
                [
                    ValidationError(
                        "slug",
                        f"tool group '{group.slug}' is used by "
                        + ", ".join(f"policy '{u}'" for u in in_use)
                        + "; rename it there too, through Apply YAML, or keep the slug",
                    )
                ]
            )
    _commit(
        org=org,
        actor=actor,
        changes=changes,
        doc=PolicyDocument(tool_groups=(spec,)),
        source=source,
    )
    return ToolGroup.objects.for_org(org).get(slug=slug)


def tool_group_delete(
    *,
    org: Organization,
    actor: User | None,
    group: ToolGroup,
    source: str = RevisionSource.FORM,
) -> None:
    """Delete a tool group; refused while a policy allows or denies it."""
    _check_actor(org, actor, Perm.EDIT_POLICY)
    group = ToolGroup.objects.get_for_org_or_404(org, pk=group.pk)
    _commit(
        org=org,
        actor=actor,
        changes=[_Change(RevisionKind.TOOL_GROUP, group, None)],
        doc=None,
        source=source,
    )
