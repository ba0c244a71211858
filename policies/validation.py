"""Validation of a policy document against an organization's catalog (`validate_document`).

Structure first (the same checks `parse_document` runs, since specs may also be built in code),
then every name against the catalog snapshot, then the engine's own compile-time checks
(conflicting pins of equal specificity, clashing overrides) by compiling the document.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

import jsonschema

from policies.checks import check_document, location, policy_prefix
from policies.engine import compile_policies
from policies.errors import PolicyCompileError, ValidationError
from policies.patterns import ToolRefError, parse_tool_ref
from policies.types import (
    ArgumentRule,
    CatalogSnapshot,
    CatalogTool,
    Override,
    PolicyDocument,
    PolicySpec,
)


def _schema_properties(tool: CatalogTool) -> Mapping[str, Any]:
    properties = (
        tool.input_schema.get("properties") if isinstance(tool.input_schema, Mapping) else None
    )
    return properties if isinstance(properties, Mapping) else {}


def _schema_types(prop: Any) -> set[str]:
    if not isinstance(prop, Mapping):
        return set()
    kind = prop.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {k for k in kind if isinstance(k, str)}
    return set()


def _schema_problem(value: Any, prop: Any) -> str | None:
    """Why `value` does not fit the argument's JSON Schema, or None (also when unknowable)."""
    if not isinstance(prop, Mapping):
        return None
    try:
        error = next(iter(jsonschema.Draft202012Validator(prop).iter_errors(value)), None)
    except Exception:
        return None  # an odd or unresolvable tool schema must not break validation
    return error.message if error is not None else None


class _Validator:
    def __init__(self, document: PolicyDocument, snapshot: CatalogSnapshot) -> None:
        self.document = document
        self.snapshot = snapshot.with_tool_groups(document.tool_group_map())
        self.tools = {tool.exposed_name: tool for tool in snapshot.tools}
        self.servers = {tool.server for tool in snapshot.tools}
        self.overrides: dict[str, Override] = {
            o.name: o for spec in document.policies for o in spec.overrides
        }
        self.users = {u.casefold() for u in snapshot.user_emails}
        self.problems: list[ValidationError] = []
        # Exposed names (tools and overrides) by server: patterns and suggestions only look
        # at the servers they can concern, which keeps a 2,000-tool catalog fast.
        self.by_server: dict[str, list[tuple[str, str, CatalogTool]]] = {}
        for name in [*self.tools, *self.overrides]:
            tool = self.real_tool(name)
            if tool is not None:
                server, _, short = name.partition(".")
                self.by_server.setdefault(server, []).append((name, short, tool))
        self._matches: dict[str, list[tuple[str, CatalogTool]]] = {}

    def add(self, where: str, message: str, severity: str = "error") -> None:
        self.problems.append(ValidationError(where, message, severity))  # type: ignore[arg-type]

    def real_tool(self, name: str) -> CatalogTool | None:
        """The catalog tool behind an exposed name (following an override)."""
        if name in self.tools:
            return self.tools[name]
        override = self.overrides.get(name)
        if override is not None:
            try:
                return self.tools.get(parse_tool_ref(override.tool).exposed_name)
            except ToolRefError:
                return None
        return None

    def matched(self, text: str) -> list[tuple[str, CatalogTool]]:
        try:
            pattern = parse_tool_ref(text)
        except ToolRefError:
            return []  # reported by the structural checks
        if pattern.is_exact:
            tool = self.real_tool(pattern.exposed_name)
            return [(pattern.exposed_name, tool)] if tool is not None else []
        found = self._matches.get(text)
        if found is None:
            if "*" in pattern.server:
                servers = list(self.by_server)
            else:
                servers = [pattern.server] if pattern.server in self.by_server else []
            found = [
                (name, tool)
                for server in servers
                for name, short, tool in self.by_server[server]
                if pattern.matches(server, short)
            ]
            self._matches[text] = found
        return found

    def suggestion(self, name: str) -> str:
        """`; did you mean 'chat.post_message'?` from the same server, or about the server."""
        server, _, short = name.partition(".")
        if server in self.by_server:
            shorts = [s for _, s, _ in self.by_server[server]]
            close = difflib.get_close_matches(short, shorts, n=1)
            return f"; did you mean '{server}.{close[0]}'?" if close else ""
        close = difflib.get_close_matches(server, list(self.by_server), n=1)
        return f"; there is no server '{server}' (did you mean '{close[0]}'?)" if close else ""

    def ref(self, where: str, text: str, *, allowing: bool) -> list[tuple[str, CatalogTool]]:
        try:
            pattern = parse_tool_ref(text)
        except ToolRefError:
            return []
        found = self.matched(text)
        if pattern.is_exact:
            if not found:
                more = self.suggestion(pattern.exposed_name)
                self.add(where, f"unknown tool '{text}': no such tool in the catalog{more}")
            elif allowing and not found[0][1].callable:
                self.add(
                    where,
                    f"tool '{text}' is not approved or is quarantined; this rule has no effect "
                    "until an approver approves it",
                    "warning",
                )
            return found
        if "*" not in pattern.server and pattern.server not in self.servers:
            self.add(where, f"unknown server '{pattern.server}' in '{text}'")
        elif not found:
            self.add(where, f"the pattern '{text}' matches no tool in the catalog yet", "warning")
        elif allowing and pattern.server == "*" and pattern.tool == "*":
            self.add(where, "allows every tool of every server", "warning")
        return found

    def run(self) -> list[ValidationError]:
        for group in self.document.tool_groups:
            for index, text in enumerate(group.tools):
                self.ref(location("toolGroups", group.slug, index), text, allowing=True)
        for index, spec in enumerate(self.document.policies):
            self.policy(spec, policy_prefix(self.document, index))
        return self.problems

    def policy(self, spec: PolicySpec, prefix: str) -> None:
        snapshot = self.snapshot
        if spec.consumer is not None and spec.consumer not in snapshot.agent_slugs:
            self.add(location(prefix, "consumer"), f"unknown agent '{spec.consumer}'")
        subject_checks: list[tuple[str, tuple[str, ...], Callable[[str], bool], str]] = [
            (
                "agents",
                spec.subjects.agents,
                lambda v: v == "*" or v in snapshot.agent_slugs,
                "agent",
            ),
            ("teams", spec.subjects.teams, lambda v: v in snapshot.team_slugs, "team"),
            ("users", spec.subjects.users, lambda v: v.casefold() in self.users, "user"),
            (
                "agentTags",
                spec.subjects.agent_tags,
                lambda v: v in snapshot.agent_tags,
                "agent tag",
            ),
        ]
        for key, values, known, what in subject_checks:
            for i, value in enumerate(values):
                if not known(value):
                    self.add(location(prefix, "subjects", key, i), f"unknown {what} '{value}'")
        for section, rules in (("allow", spec.allow), ("deny", spec.deny)):
            for i, slug in enumerate(rules.tool_groups):
                if slug not in snapshot.tool_groups:
                    self.add(
                        location(prefix, section, "toolGroups", i), f"unknown tool group '{slug}'"
                    )
            for i, server in enumerate(rules.servers):
                if server not in self.servers:
                    self.add(location(prefix, section, "servers", i), f"unknown server '{server}'")
            for i, text in enumerate(rules.tools):
                self.ref(location(prefix, section, "tools", i), text, allowing=section == "allow")
        for entry in spec.arguments:
            where = location(prefix, "arguments", entry.tool)
            found = self.ref(where, entry.tool, allowing=False)
            if found:
                for rule in entry.rules:
                    self.argument(location(where, rule.argument), rule, [t for _, t in found])
        for i, override in enumerate(spec.overrides):
            where = location(prefix, "overrides", i)
            found = self.ref(location(where, "tool"), override.tool, allowing=True)
            if found:
                properties = _schema_properties(found[0][1])
                for argument, value in override.pin.items():
                    here = location(where, "pin", argument)
                    if argument not in properties:
                        self.add(here, self._no_argument(found[0][1], argument))
                    elif problem := _schema_problem(value, properties[argument]):
                        self.add(
                            here, f"the pinned value does not fit the tool's schema: {problem}"
                        )
        for entry in spec.limits.per_tool:
            self.ref(location(prefix, "limits", "perTool", entry.tool), entry.tool, allowing=False)

    @staticmethod
    def _no_argument(tool: CatalogTool, argument: str) -> str:
        names = sorted(_schema_properties(tool))
        known = f" (its arguments: {', '.join(names)})" if names else " (it takes no arguments)"
        return f"tool {tool.exposed_name} has no argument '{argument}'{known}"

    def argument(self, where: str, rule: ArgumentRule, tools: list[CatalogTool]) -> None:
        having = [t for t in tools if rule.argument in _schema_properties(t)]
        if not having:
            self.add(where, self._no_argument(tools[0], rule.argument))
            return
        for tool in having:
            prop = _schema_properties(tool)[rule.argument]
            types = _schema_types(prop)
            strings_only = rule.pattern is not None or rule.max_length is not None
            if types and strings_only and "string" not in types:
                self.add(
                    where,
                    f"argument '{rule.argument}' of {tool.exposed_name} is not a string "
                    f"({', '.join(sorted(types))}); pattern and maxLength apply to strings",
                )
            numbers_only = rule.minimum is not None or rule.maximum is not None
            if types and numbers_only and not types & {"number", "integer"}:
                self.add(
                    where,
                    f"argument '{rule.argument}' of {tool.exposed_name} is not a number "
                    f"({', '.join(sorted(types))}); minimum and maximum apply to numbers",
                )
            if rule.pinned is not None and (problem := _schema_problem(rule.pinned.value, prop)):
                self.add(
                    location(where, "pinned"),
                    f"the pinned value does not fit {tool.exposed_name}'s schema: {problem}",
                )
            for i, value in enumerate(rule.enum or ()):
                if problem := _schema_problem(value, prop):
                    self.add(
                        location(where, "enum", i),
                        f"this value can never be sent to {tool.exposed_name}: {problem}",
                        "warning",
                    )


def validate_document(
    document: PolicyDocument, snapshot: CatalogSnapshot, *, compile_check: bool = True
) -> list[ValidationError]:
    """Every problem of `document` against the organization's catalog, errors then warnings.

    Unknown tools, groups, servers, agents, teams, users and tags; malformed references and
    patterns; rules on arguments a tool's schema does not have (or of the wrong type); pinned
    values that do not fit the schema; conflicting pins; clashing overrides. Warnings (a pattern
    that matches nothing yet, a rule on an unapproved tool) do not block an import.

    `compile_check=False` leaves out the engine's compile-time checks, for a caller that
    compiles the document together with the rest of the policy set anyway (the services).
    """
    problems = check_document(document)
    structural_errors = any(p.severity == "error" for p in problems)
    problems += _Validator(document, snapshot).run()
    if compile_check and not structural_errors:
        merged = snapshot.with_tool_groups(document.tool_group_map())
        try:
            compiled = compile_policies(merged, list(document.policies), "validate", strict=False)
        except PolicyCompileError as exc:  # pragma: no cover - structural errors caught above
            problems += exc.errors
        else:
            for problem in compiled.problems:
                if problem.severity != "error":
                    continue
                where = problem.location
                if document.is_single_policy and where.startswith("policies[0]"):
                    where = where.removeprefix("policies[0]").lstrip(".")
                problems.append(ValidationError(where, problem.message, problem.severity))
    unique = list(dict.fromkeys(problems))
    return [p for p in unique if p.severity == "error"] + [
        p for p in unique if p.severity != "error"
    ]
