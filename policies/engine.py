"""The policy decision engine: compile an organization's policies once, decide in microseconds.

    compiled = compile(snapshot, policies, version="42")
    decision = compiled.decide(principal, "chat.post_message", {"text": "hi"})
    tools = compiled.visible_tools(principal, toolset="daily-triage")

Pure Python, no I/O when deciding. The semantics, in the order `decide` applies them:

1. A tool the catalog does not have is denied; so is a tool that is not `callable` (its
   version is not approved, or it is quarantined): no policy can allow it.
2. A call through a toolset (`/mcp/<org>/<toolset>`) only reaches the toolset's tools.
3. Deny wins over allow. A deny on a tool also denies its overrides ("safe variants").
4. Nothing is allowed by default: some policy that applies to the principal must allow the
   tool (a group, its server, a reference or pattern, or an override the policy defines).
5. Pinned arguments are merged into the call (they replace what the agent sent). The most
   specific pin wins: an override's pin, then one tool, a pattern within a server, a whole
   server, a pattern across servers. Two different values at the same specificity are an
   error at compile time when the two policies can apply to one principal (same policy, or a
   shared agent, team, tag or user, or `agents: ["*"]`); any other clash shows up only for a
   principal both apply to, and that call is denied rather than guessed.
6. Every argument rule (enum, pattern, maxLength, minimum, maximum, required) of every
   applicable policy that names the tool (or its real tool, for a variant) must hold.

Per principal, the applicable policies and each tool's outcome are computed once and cached
inside the compiled object (keyed by the `Principal` value), so a warm `decide` is a few dict
lookups plus the argument checks.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from policies.argrules import ArgumentCheck, display_value, json_equal
from policies.checks import check_policy, location
from policies.errors import PolicyCompileError, ValidationError
from policies.patterns import (
    RANK_NAMES,
    RANK_OVERRIDE,
    ToolPattern,
    ToolRefError,
    parse_tool_ref,
    split_exposed_name,
)
from policies.types import (
    CatalogSnapshot,
    CatalogTool,
    JSONValue,
    Override,
    PolicySpec,
    Principal,
    Redaction,
)

__all__ = [
    "CompiledPolicy",
    "Decision",
    "Limit",
    "PinApplied",
    "ToolIdentity",
    "VisibleTool",
    "compile",
    "compile_policies",
]

ErrorClass = Literal["policy", "validation"]
MAX_CACHED_PRINCIPALS = 50_000

# --------------------------------------------------------------------------- public results


@dataclass(frozen=True, slots=True)
class ToolIdentity:
    """The real tool behind an exposed name: what the gateway calls and audits."""

    server: str
    name: str
    definition_hash: str
    server_version_id: int | str | None

    @property
    def exposed_name(self) -> str:
        return f"{self.server}.{self.name}"


@dataclass(frozen=True, slots=True)
class Limit:
    """A rate limit the gateway must enforce for this call: one counter per `key`.

    Keys are unique per (organization, policy, scope, [perTool rule, tool], window), e.g.
    `org:7:policy:daily-triage:agent:12:user:3:minute`.
    """

    key: str
    window: Literal["minute", "day"]
    max_calls: int
    rule: str

    @property
    def window_seconds(self) -> int:
        return 60 if self.window == "minute" else 86_400


@dataclass(frozen=True, slots=True)
class PinApplied:
    """A pinned argument merged into the call; `replaced` when the agent sent another value."""

    argument: str
    value: JSONValue
    rule: str
    replaced: bool


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one call: allowed or not, why, and what the gateway must do with it.

    `effective_arguments` are the arguments to forward (pins merged in) when allowed, or the
    agent's arguments when denied. `error_class` is None when allowed, "validation" when an
    argument rule failed, "policy" otherwise.
    """

    allowed: bool
    exposed_name: str
    tool: ToolIdentity | None
    matched_rules: tuple[str, ...]
    reasons: tuple[str, ...]
    effective_arguments: dict[str, JSONValue]
    error_class: ErrorClass | None
    limits: tuple[Limit, ...] = ()
    redaction: Redaction = field(default_factory=Redaction)
    pins: tuple[PinApplied, ...] = ()
    outbound_domains: frozenset[str] = frozenset()
    policy_version: str = ""


@dataclass(frozen=True, slots=True)
class VisibleTool:
    """One entry of tools/list for a principal. The dicts are shared: treat them as read-only."""

    name: str
    title: str
    description: str
    input_schema: Mapping[str, Any]
    annotations: Mapping[str, Any]
    tool: ToolIdentity


# --------------------------------------------------------------------------- compiled pieces


@dataclass(frozen=True, slots=True)
class _Ref:
    """Where a rule comes from: `policy:x/deny/tools[0]`, and the same for humans."""

    rule_id: str
    policy: str
    where: str  # location inside the policy: deny.tools[0]
    note: str = ""  # e.g. "group 'jira-triage'"

    def cite(self) -> str:
        note = f": {self.note}" if self.note else ""
        return f"policy '{self.policy}' ({self.where}{note})"


def _ref(policy: str, *segments: str | int, note: str = "") -> _Ref:
    where = location("", *segments)
    path = "/".join(f"{s}" if isinstance(s, str) else f"[{s}]" for s in segments).replace("/[", "[")
    return _Ref(rule_id=f"policy:{policy}/{path}", policy=policy, where=where, note=note)


@dataclass(frozen=True, slots=True)
class _Pin:
    argument: str
    rank: int
    value: JSONValue
    ref: _Ref


class _Exposed:
    """A name agents can call: a real tool, or an override of one."""

    __slots__ = ("identity", "name", "override", "pins", "real_name", "server", "short", "tool")

    def __init__(self, name: str, tool: CatalogTool, override: Override | None = None) -> None:
        self.name = name
        self.server, self.short = split_exposed_name(name) or (tool.server, tool.name)
        self.tool = tool
        self.real_name = tool.exposed_name
        self.override = override
        self.pins: list[_Pin] = []
        self.identity = ToolIdentity(
            server=tool.server,
            name=tool.name,
            definition_hash=tool.definition_hash,
            server_version_id=tool.server_version_id,
        )


class _Policy:
    """One policy, with every reference expanded against the catalog."""

    __slots__ = (
        "agents",
        "all_agents",
        "allow",
        "checks",
        "deny",
        "domains",
        "grants_nothing",
        "index",
        "name",
        "per_tool",
        "pins",
        "spec",
        "tags",
        "teams",
        "users",
    )

    def __init__(self, spec: PolicySpec, index: int) -> None:
        self.spec = spec
        self.index = index
        self.name = spec.name
        agents = set(spec.agents)
        self.all_agents = "*" in agents
        self.agents = frozenset(agents - {"*"})
        self.teams = frozenset(spec.subjects.teams)
        self.tags = frozenset(spec.subjects.agent_tags)
        self.users = frozenset(u.casefold() for u in spec.subjects.users)
        self.allow: dict[str, list[_Ref]] = {}
        self.deny: dict[str, list[_Ref]] = {}
        self.pins: dict[str, list[_Pin]] = {}
        self.checks: dict[str, list[ArgumentCheck]] = {}
        self.per_tool: dict[str, list[tuple[int, str, int | None, int | None]]] = {}
        self.domains = frozenset(d.lower() for d in spec.outbound.allow_domains)
        self.grants_nothing = spec.allow.is_empty() and not spec.overrides

    def applies(self, principal: Principal) -> bool:
        return (
            self.all_agents
            or principal.agent_slug in self.agents
            or not self.teams.isdisjoint(principal.team_slugs)
            or not self.tags.isdisjoint(principal.agent_tags)
            or (principal.user_email is not None and principal.user_email.casefold() in self.users)
        )

    def may_overlap(self, other: _Policy) -> bool:
        """True when one principal is certainly covered by both (as far as names tell)."""
        return (
            self is other
            or self.all_agents
            or other.all_agents
            or not self.agents.isdisjoint(other.agents)
            or not self.teams.isdisjoint(other.teams)
            or not self.tags.isdisjoint(other.tags)
            or not self.users.isdisjoint(other.users)
        )


class _Catalog:
    """The exposed names of the organization and the expansion of references to them."""

    def __init__(self, snapshot: CatalogSnapshot, problems: list[ValidationError]) -> None:
        self.exposed: dict[str, _Exposed] = {}
        self.by_server: dict[str, list[_Exposed]] = {}
        self.variants: dict[str, list[_Exposed]] = {}
        self._matches: dict[str, tuple[_Exposed, ...]] = {}
        for tool in snapshot.tools:
            name = tool.exposed_name
            known = self.exposed.get(name)
            if known is not None:
                # Two entries for one tool (e.g. an approved and a changed version): keep the
                # one that is not callable, so that a doubt never opens a tool.
                problems.append(
                    ValidationError(
                        "catalog",
                        f"tool {name} appears twice in the catalog snapshot; "
                        "the entry that is not callable wins",
                        "warning",
                    )
                )
                if not known.tool.callable:
                    continue
                self.by_server[tool.server].remove(known)
            entry = _Exposed(name, tool)
            self.exposed[name] = entry
            self.by_server.setdefault(tool.server, []).append(entry)
        self.groups: dict[str, frozenset[str]] = {}
        self._raw_groups = dict(snapshot.tool_groups)

    def add_override(self, override: Override) -> _Exposed | None:
        target = self.exposed.get(parse_tool_ref(override.tool).exposed_name)
        if target is None or target.override is not None:
            return None
        entry = _Exposed(override.name, target.tool, override)
        self.exposed[override.name] = entry
        self.by_server.setdefault(entry.server, []).append(entry)
        self.variants.setdefault(target.name, []).append(entry)
        return entry

    def match(self, text: str) -> tuple[_Exposed, ...]:
        """Exposed tools a reference or pattern names (overrides included)."""
        found = self._matches.get(text)
        if found is None:
            pattern = parse_tool_ref(text)
            found = tuple(self._match(pattern))
            self._matches[text] = found
        return found

    def _match(self, pattern: ToolPattern) -> Iterable[_Exposed]:
        if pattern.is_exact:
            entry = self.exposed.get(pattern.exposed_name)
            return (entry,) if entry is not None else ()
        if "*" in pattern.server:
            candidates: Iterable[_Exposed] = (e for es in self.by_server.values() for e in es)
        else:
            candidates = self.by_server.get(pattern.server, ())
        return [e for e in candidates if pattern.matches(e.server, e.short)]

    def with_variants(self, entries: Iterable[_Exposed]) -> list[_Exposed]:
        """The entries plus the overrides of any real tool among them (no duplicates)."""
        result = dict.fromkeys(entries)
        for entry in list(result):
            if entry.override is None:
                result.update(dict.fromkeys(self.variants.get(entry.name, ())))
        return list(result)

    def group(self, slug: str) -> frozenset[str] | None:
        names = self.groups.get(slug)
        if names is None:
            refs = self._raw_groups.get(slug)
            if refs is None:
                return None
            expanded: set[str] = set()
            for ref in refs:
                try:
                    expanded.update(e.name for e in self.match(ref))
                except ToolRefError:
                    continue  # reported by validation; an unreadable entry matches nothing
            names = self.groups[slug] = frozenset(expanded)
        return names


# --------------------------------------------------------------------------- per principal


class _Entry:
    """The outcome of one exposed name for one principal, minus the per-call argument work."""

    __slots__ = (
        "allowed",
        "checks",
        "domains",
        "exposed",
        "limits",
        "matched",
        "pin_values",
        "pins",
        "reasons",
        "visible",
    )

    def __init__(self, exposed: _Exposed | None) -> None:
        self.exposed = exposed
        self.allowed = False
        self.matched: tuple[str, ...] = ()
        self.reasons: tuple[str, ...] = ()
        self.pins: tuple[tuple[str, JSONValue, str, str], ...] = ()  # arg, value, rule, reason
        self.pin_values: dict[str, JSONValue] = {}
        self.checks: tuple[ArgumentCheck, ...] = ()
        self.limits: tuple[Limit, ...] = ()
        self.domains: frozenset[str] = frozenset()
        self.visible: VisibleTool | None = None


class _View:
    """Everything about one principal, filled lazily and kept with the compiled policy."""

    __slots__ = ("entries", "policies", "principal", "redaction", "scope", "visible")

    def __init__(self, principal: Principal, policies: list[_Policy]) -> None:
        self.principal = principal
        self.policies = policies
        self.entries: dict[str, _Entry] = {}
        self.visible: dict[str | None, tuple[VisibleTool, ...]] = {}
        agent = principal.agent_id if principal.agent_id is not None else principal.agent_slug
        scope = f"agent:{agent}"
        user = principal.user_id if principal.user_id is not None else principal.user_email
        if user is not None:
            scope += f":user:{user}"
        self.scope = scope
        arguments: dict[str, None] = {}
        results: dict[str, None] = {}
        for policy in policies:
            arguments.update(dict.fromkeys(policy.spec.redact.arguments))
            results.update(dict.fromkeys(policy.spec.redact.results))
        self.redaction = Redaction(arguments=tuple(arguments), results=tuple(results))


# --------------------------------------------------------------------------- the compiled policy


class CompiledPolicy:
    """An organization's policies, compiled against its catalog. Immutable from the outside;
    safe to share between threads (the caches only ever gain equivalent entries)."""

    def __init__(
        self,
        *,
        version: str,
        org_id: int | str | None,
        catalog: _Catalog,
        policies: list[_Policy],
        problems: list[ValidationError],
    ) -> None:
        self.version = version
        self.org_id = org_id
        self.problems: tuple[ValidationError, ...] = tuple(problems)
        self._catalog = catalog
        self._policies = policies
        self._views: dict[Principal, _View] = {}
        self._toolsets = {slug: catalog.group(slug) for slug in catalog._raw_groups}
        self._server_domains: dict[str, frozenset[str]] = {}
        for policy in policies:
            for name in policy.allow:
                server = catalog.exposed[name].tool.server
                self._server_domains[server] = (
                    self._server_domains.get(server, frozenset()) | policy.domains
                )

    # ----------------------------------------------------------------- public reads

    @property
    def policy_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self._policies)

    @property
    def toolsets(self) -> frozenset[str]:
        """Slugs of the tool groups, each also served as its own endpoint."""
        return frozenset(self._toolsets)

    def tool(self, exposed_name: str) -> ToolIdentity | None:
        entry = self._catalog.exposed.get(exposed_name)
        return entry.identity if entry is not None else None

    def outbound_domains(self, server: str) -> frozenset[str]:
        """Egress hosts for `server`: the union of `outbound.allowDomains` of the policies
        that grant any of its tools (empty: the server may reach no declared host)."""
        return self._server_domains.get(server, frozenset())

    # ----------------------------------------------------------------- decide

    def decide(
        self,
        principal: Principal,
        exposed_tool_name: str,
        arguments: Mapping[str, JSONValue] | None,
        *,
        toolset: str | None = None,
    ) -> Decision:
        """Decide one tools/call. Never raises for bad input: it denies with a reason."""
        if arguments is None:
            arguments = {}
        if self.org_id is not None and principal.org_id != self.org_id:
            return self._deny(
                exposed_tool_name,
                None,
                arguments,
                ("tenant:mismatch",),
                ("denied: the caller belongs to another organization than this policy",),
            )
        view = self._views.get(principal)
        if view is None:
            view = self._view(principal)
        entry = view.entries.get(exposed_tool_name)
        if entry is None:
            entry = self._entry(view, exposed_tool_name)
        exposed = entry.exposed
        if toolset is not None:
            members = self._toolsets.get(toolset)
            if members is None or exposed_tool_name not in members:
                what = "does not exist" if members is None else "does not include this tool"
                return self._deny(
                    exposed_tool_name,
                    exposed.identity if exposed else None,
                    arguments,
                    (f"toolset:{toolset}",),
                    (f"denied: toolset '{toolset}' {what}",),
                    redaction=view.redaction,
                )
        if not entry.allowed:
            return self._deny(
                exposed_tool_name,
                exposed.identity if exposed else None,
                arguments,
                entry.matched,
                entry.reasons,
                redaction=view.redaction,
            )
        assert exposed is not None
        if type(arguments) is not dict and not isinstance(arguments, Mapping):
            return self._deny(
                exposed_tool_name,
                exposed.identity,
                {},
                entry.matched,
                ("denied: the arguments must be a JSON object",),
                redaction=view.redaction,
                error_class="validation",
            )
        effective = dict(arguments)
        applied: tuple[PinApplied, ...] = ()
        reasons = entry.reasons
        if entry.pins:
            pins = []
            notes = []
            for argument, value, rule, reason in entry.pins:
                replaced = argument in effective and not json_equal(effective[argument], value)
                effective[argument] = (
                    copy.deepcopy(value) if isinstance(value, dict | list) else value
                )
                pins.append(PinApplied(argument, value, rule, replaced))
                notes.append(reason + ("; the agent's value was replaced" if replaced else ""))
            applied = tuple(pins)
            reasons = reasons + tuple(notes)
        if entry.checks:
            failures = [f for check in entry.checks for f in check.check(effective)]
            if failures:
                return Decision(
                    allowed=False,
                    exposed_name=exposed_tool_name,
                    tool=exposed.identity,
                    matched_rules=tuple(f.rule_id for f in failures),
                    reasons=tuple(
                        f"denied: {f.message} (policy '{f.policy}', {f.location})" for f in failures
                    ),
                    effective_arguments=effective,
                    error_class="validation",
                    redaction=view.redaction,
                    pins=applied,
                    policy_version=self.version,
                )
        return Decision(
            allowed=True,
            exposed_name=exposed_tool_name,
            tool=exposed.identity,
            matched_rules=entry.matched,
            reasons=reasons,
            effective_arguments=effective,
            error_class=None,
            limits=entry.limits,
            redaction=view.redaction,
            pins=applied,
            outbound_domains=entry.domains,
            policy_version=self.version,
        )

    def _deny(
        self,
        name: str,
        identity: ToolIdentity | None,
        arguments: Any,
        matched: tuple[str, ...],
        reasons: tuple[str, ...],
        *,
        redaction: Redaction | None = None,
        error_class: ErrorClass = "policy",
    ) -> Decision:
        return Decision(
            allowed=False,
            exposed_name=name,
            tool=identity,
            matched_rules=matched,
            reasons=reasons,
            effective_arguments=dict(arguments) if isinstance(arguments, Mapping) else {},
            error_class=error_class,
            redaction=redaction if redaction is not None else Redaction(),
            policy_version=self.version,
        )

    # ----------------------------------------------------------------- tools/list

    def visible_tools(self, principal: Principal, toolset: str | None = None) -> list[VisibleTool]:
        """What tools/list shows `principal` (through `toolset` if given), sorted by name.

        Pinned arguments are removed from each input schema: the agent cannot set them.
        """
        if self.org_id is not None and principal.org_id != self.org_id:
            return []
        if toolset is not None and toolset not in self._toolsets:
            return []
        view = self._views.get(principal)
        if view is None:
            view = self._view(principal)
        listed = view.visible.get(toolset)
        if listed is None:
            names: set[str] = set()
            for policy in view.policies:
                names.update(policy.allow)
            if toolset is not None:
                names &= self._toolsets[toolset]  # type: ignore[operator]
            result = []
            for name in sorted(names):
                entry = view.entries.get(name) or self._entry(view, name)
                if entry.allowed:
                    result.append(entry.visible or self._visible(entry))
            listed = view.visible[toolset] = tuple(result)
        return list(listed)

    def _visible(self, entry: _Entry) -> VisibleTool:
        exposed = entry.exposed
        assert exposed is not None
        tool, override = exposed.tool, exposed.override
        schema: Mapping[str, Any] = tool.input_schema
        if entry.pin_values:
            schema = _without_arguments(schema, entry.pin_values)
        visible = VisibleTool(
            name=exposed.name,
            title=(override.title if override and override.title is not None else tool.title),
            description=(
                override.description
                if override and override.description is not None
                else tool.description
            ),
            input_schema=schema,
            annotations=tool.annotations,
            tool=exposed.identity,
        )
        entry.visible = visible
        return visible

    # ----------------------------------------------------------------- per-principal work

    def _view(self, principal: Principal) -> _View:
        if len(self._views) >= MAX_CACHED_PRINCIPALS:
            self._views.clear()  # a cache, not a store: start over rather than grow forever
        view = _View(principal, [p for p in self._policies if p.applies(principal)])
        self._views[principal] = view
        return view

    def _entry(self, view: _View, name: str) -> _Entry:
        exposed = self._catalog.exposed.get(name)
        entry = _Entry(exposed)
        principal = view.principal
        if exposed is None:
            # Not cached: an agent must not grow the cache by calling made-up names.
            entry.matched = ("catalog:unknown-tool",)
            entry.reasons = (
                f"denied: tool '{display_value(name, 80)[1:-1]}' does not exist in this "
                "organization's catalog",
            )
            return entry
        view.entries[name] = entry
        label = _label(exposed)
        if not exposed.tool.callable:
            entry.matched = ("catalog:not-callable",)
            entry.reasons = (
                f"denied: tool {label} is quarantined or its server version is not approved; "
                "no policy can allow it until an approver approves it",
            )
            return entry
        denies = [ref for p in view.policies for ref in p.deny.get(name, ())]
        if denies:
            entry.matched = tuple(ref.rule_id for ref in denies)
            entry.reasons = tuple(f"denied: tool {label} is denied by {r.cite()}" for r in denies)
            return entry
        granting = [p for p in view.policies if name in p.allow]
        if not granting:
            entry.matched = ("default:deny",)
            if view.policies:
                entry.reasons = (
                    f"denied: no policy allows tool {label} for {principal.describe()} "
                    f"(applicable policies: {', '.join(repr(p.name) for p in view.policies)})",
                )
            else:
                entry.reasons = (
                    f"denied: no policy allows tool {label} for {principal.describe()}: "
                    "no policy applies to this agent, so nothing is allowed",
                )
            return entry
        allows = [ref for p in granting for ref in p.allow[name]]
        pins, conflict = _resolve_pins(view.policies, exposed)
        if conflict:
            entry.matched = tuple(ref.rule_id for ref in conflict[1])
            refs = " and ".join(ref.cite() for ref in conflict[1])
            entry.reasons = (
                f"denied: {refs} pin argument '{conflict[0]}' of {label} to different values "
                "with the same specificity; an admin must resolve the conflict",
            )
            return entry
        entry.allowed = True
        entry.matched = tuple(ref.rule_id for ref in allows) + tuple(
            pin.ref.rule_id for pin in pins.values()
        )
        entry.reasons = tuple(f"allowed: tool {label} is allowed by {r.cite()}" for r in allows)
        entry.pins = tuple(
            (
                arg,
                pin.value,
                pin.ref.rule_id,
                f"pinned: argument '{arg}' is set to {display_value(pin.value)} by "
                f"{pin.ref.cite()}",
            )
            for arg, pin in sorted(pins.items())
        )
        entry.pin_values = {arg: pin.value for arg, pin in pins.items()}
        entry.checks = tuple(c for p in view.policies for c in p.checks.get(name, ()))
        entry.limits = self._limits(view, exposed, granting)
        entry.domains = frozenset().union(*(p.domains for p in granting))
        return entry

    def _limits(self, view: _View, exposed: _Exposed, granting: list[_Policy]) -> tuple[Limit, ...]:
        limits: list[Limit] = []
        org = view.principal.org_id
        for policy in view.policies:
            spec = policy.spec.limits
            scope = "org" if spec.per == "organization" else view.scope
            base = f"org:{org}:policy:{policy.name}:{scope}"
            if policy in granting or policy.grants_nothing:
                for window, value, key in (
                    ("minute", spec.per_minute, "rateLimitPerMinute"),
                    ("day", spec.per_day, "rateLimitPerDay"),
                ):
                    if value is not None:
                        rule = f"policy:{policy.name}/limits/{key}"
                        limits.append(Limit(f"{base}:{window}", window, value, rule))  # type: ignore[arg-type]
            for index, ref_text, per_minute, per_day in policy.per_tool.get(exposed.name, ()):
                # Variants share their real tool's counter: a renamed tool is the same tool.
                tool_base = f"{base}:perTool[{index}]:{exposed.real_name}"
                for window, value, key in (
                    ("minute", per_minute, "rateLimitPerMinute"),
                    ("day", per_day, "rateLimitPerDay"),
                ):
                    if value is not None:
                        rule = f"policy:{policy.name}/limits/perTool/{ref_text}/{key}"
                        limits.append(Limit(f"{tool_base}:{window}", window, value, rule))  # type: ignore[arg-type]
        return tuple(limits)


def _label(exposed: _Exposed) -> str:
    if exposed.override is not None:
        return f"{exposed.name} (a variant of {exposed.real_name})"
    return exposed.name


def _without_arguments(schema: Mapping[str, Any], pinned: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `schema` whose `properties` and `required` leave out the pinned arguments."""
    result = dict(schema)
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        result["properties"] = {k: v for k, v in properties.items() if k not in pinned}
    required = schema.get("required")
    if isinstance(required, list | tuple):
        result["required"] = [k for k in required if k not in pinned]
    return result


def _resolve_pins(
    policies: Sequence[_Policy], exposed: _Exposed
) -> tuple[dict[str, _Pin], tuple[str, list[_Ref]] | None]:
    """The winning pin per argument, or the first argument whose top pins disagree.

    An override's own pins travel with the variant (whoever may call it gets them) and rank
    above every policy pin.
    """
    best: dict[str, list[_Pin]] = {}
    candidates = [*exposed.pins]
    for policy in policies:
        candidates += policy.pins.get(exposed.name, ())
    for pin in candidates:
        current = best.get(pin.argument)
        if current is None or pin.rank > current[0].rank:
            best[pin.argument] = [pin]
        elif pin.rank == current[0].rank:
            current.append(pin)
    winners: dict[str, _Pin] = {}
    for argument, top in best.items():
        first = top[0]
        clashing = [c for c in top[1:] if not json_equal(c.value, first.value)]
        if clashing:
            return {}, (argument, [first.ref, clashing[0].ref])
        winners[argument] = first
    return winners, None


# --------------------------------------------------------------------------- compile


def compile(
    snapshot: CatalogSnapshot,
    policies: Sequence[PolicySpec],
    version: str | int,
    *,
    org_id: int | str | None = None,
    strict: bool = True,
) -> CompiledPolicy:
    """Compile `policies` against `snapshot` into an immutable, cacheable decision structure.

    Raises PolicyCompileError when a spec is structurally invalid (always: dropping a policy
    could drop a deny), and, when `strict`, on conflicting pins of equal specificity or
    clashing override names. With `strict=False` those conflicts are kept in `.problems` and
    the affected tools are denied (fail closed) instead of failing the whole organization.
    `org_id`, when given, makes every decision for another organization's principal a denial.
    """
    invalid: list[ValidationError] = []
    for index, spec in enumerate(policies):
        invalid += [
            e for e in check_policy(spec, prefix=f"policies[{index}]") if e.severity == "error"
        ]
    names = [spec.name for spec in policies]
    for index, name in enumerate(names):
        if names.index(name) != index:
            invalid.append(
                ValidationError(f"policies[{index}].name", f"policy name '{name}' is used twice")
            )
    if invalid:
        raise PolicyCompileError(invalid)

    problems: list[ValidationError] = []
    catalog = _Catalog(snapshot, problems)
    # A disabled policy is still checked above (it may be enabled later) but grants and denies
    # nothing; indexes stay those of `policies` so problems point at the caller's list.
    compiled = [_Policy(spec, index) for index, spec in enumerate(policies) if spec.enabled]
    _add_overrides(catalog, compiled, problems)
    for policy in compiled:
        _expand(catalog, policy)
    problems += _pin_conflicts(catalog, compiled)
    errors = [p for p in problems if p.severity == "error"]
    if strict and errors:
        raise PolicyCompileError(errors)
    return CompiledPolicy(
        version=str(version),
        org_id=org_id,
        catalog=catalog,
        policies=compiled,
        problems=problems,
    )


compile_policies = compile


def _override_key(override: Override) -> tuple[Any, ...]:
    return (parse_tool_ref(override.tool).exposed_name, override.title, override.description)


def _add_overrides(
    catalog: _Catalog, policies: list[_Policy], problems: list[ValidationError]
) -> None:
    defined: dict[str, tuple[Override, _Policy, int]] = {}
    clashing: set[str] = set()
    for policy in policies:
        for index, override in enumerate(policy.spec.overrides):
            where = f"policies[{policy.index}].overrides[{index}].name"
            if override.name in catalog.exposed and catalog.exposed[override.name].override is None:
                problems.append(
                    ValidationError(
                        where,
                        f"override '{override.name}' has the name of a catalog tool; "
                        "choose another name",
                    )
                )
                clashing.add(override.name)
                continue
            first = defined.get(override.name)
            if first is None:
                defined[override.name] = (override, policy, index)
            elif _override_key(first[0]) != _override_key(override) or not json_equal(
                first[0].pin, override.pin
            ):
                problems.append(
                    ValidationError(
                        where,
                        f"override '{override.name}' is also defined, differently, by policy "
                        f"'{first[1].name}' (overrides[{first[2]}]); one name, one definition",
                    )
                )
                clashing.add(override.name)
    for name, (override, policy, index) in defined.items():
        if name in clashing:
            continue  # fail closed: a clashing variant is not exposed at all
        entry = catalog.add_override(override)
        if entry is None:
            problems.append(
                ValidationError(
                    f"policies[{policy.index}].overrides[{index}].tool",
                    f"override '{name}' refers to '{override.tool}', which is not in the "
                    "catalog (or is itself an override); the override is not exposed",
                    "warning",
                )
            )
            continue
        ref = _ref(policy.name, "overrides", index, "pin")
        entry.pins = [
            _Pin(
                arg,
                RANK_OVERRIDE,
                value,
                _Ref(f"{ref.rule_id}/{arg}", policy.name, f"{ref.where}.{arg}"),
            )
            for arg, value in override.pin.items()
        ]
    # Every policy that defines a variant grants it to its own subjects.
    for policy in policies:
        for index, override in enumerate(policy.spec.overrides):
            entry = catalog.exposed.get(override.name)
            if entry is not None and entry.override is not None and override.name not in clashing:
                policy.allow.setdefault(override.name, []).append(
                    _ref(policy.name, "overrides", index)
                )


def _expand(catalog: _Catalog, policy: _Policy) -> None:
    spec = policy.spec
    name = policy.name
    for section, rules, target in (
        ("allow", spec.allow, policy.allow),
        ("deny", spec.deny, policy.deny),
    ):
        found: list[tuple[_Ref, Iterable[_Exposed]]] = []
        for index, slug in enumerate(rules.tool_groups):
            members = catalog.group(slug) or frozenset()
            ref = _ref(name, section, "toolGroups", index, note=f"group '{slug}'")
            found.append((ref, (catalog.exposed[m] for m in members)))
        for index, server in enumerate(rules.servers):
            ref = _ref(name, section, "servers", index, note=f"server '{server}'")
            found.append((ref, catalog.by_server.get(server, ())))
        for index, text in enumerate(rules.tools):
            found.append((_ref(name, section, "tools", index), catalog.match(text)))
        for ref, entries in found:
            if section == "deny":
                entries = catalog.with_variants(entries)  # a deny also closes the variants
            for entry in entries:
                refs = target.setdefault(entry.name, [])
                if ref not in refs:
                    refs.append(ref)
    # Argument rules: pins ranked by the reference's specificity; checks all apply. One pin
    # and one check per rule, shared by every tool the reference matches.
    for arguments in spec.arguments:
        rank = parse_tool_ref(arguments.tool).rank
        entries = catalog.with_variants(catalog.match(arguments.tool))
        for rule in arguments.rules:
            ref = _ref(name, "arguments", arguments.tool, rule.argument)
            if rule.pinned is not None:
                pin_ref = _Ref(f"{ref.rule_id}/pinned", name, f"{ref.where}.pinned")
                pin = _Pin(rule.argument, rank, rule.pinned.value, pin_ref)
                for entry in entries:
                    policy.pins.setdefault(entry.name, []).append(pin)
            if rule.has_constraints():
                check = ArgumentCheck(rule, policy=name, rule_id=ref.rule_id, location=ref.where)
                for entry in entries:
                    policy.checks.setdefault(entry.name, []).append(check)
    for index, limit in enumerate(spec.limits.per_tool):
        for entry in catalog.with_variants(catalog.match(limit.tool)):
            policy.per_tool.setdefault(entry.name, []).append(
                (index, limit.tool, limit.per_minute, limit.per_day)
            )


def _pin_conflicts(catalog: _Catalog, policies: list[_Policy]) -> list[ValidationError]:
    """Equal-specificity pins with different values that one principal would certainly get."""
    problems: list[ValidationError] = []
    reported: set[tuple[str, str, str]] = set()
    candidates: dict[tuple[str, str, int], list[tuple[_Policy, _Pin]]] = {}
    for policy in policies:
        for name, pins in policy.pins.items():
            for pin in pins:
                if pin.rank == RANK_OVERRIDE:
                    continue  # one definition per override name: cannot disagree with itself
                candidates.setdefault((name, pin.argument, pin.rank), []).append((policy, pin))
    for (name, argument, rank), pins in candidates.items():
        if len(pins) < 2:
            continue
        for i, (policy_a, pin_a) in enumerate(pins):
            for policy_b, pin_b in pins[i + 1 :]:
                if json_equal(pin_a.value, pin_b.value) or not policy_a.may_overlap(policy_b):
                    continue
                key = (pin_a.ref.rule_id, pin_b.ref.rule_id, argument)
                if key in reported:
                    continue
                reported.add(key)
                problems.append(
                    ValidationError(
                        f"policies[{policy_b.index}].{pin_b.ref.where}",
                        f"pins argument '{argument}' of {name} to {display_value(pin_b.value)}, "
                        f"but {pin_a.ref.cite()} pins it to {display_value(pin_a.value)} with the "
                        f"same specificity ({RANK_NAMES[rank]}); make one pin more specific or "
                        "remove one",
                    )
                )
    return problems
