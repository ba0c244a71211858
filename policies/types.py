"""The inputs of the decision engine, as immutable values.

Three kinds of input, all built by the layer that owns the data (catalog selectors, the gateway's
authentication, the policy models) and handed to `policies.engine.compile`:

- `CatalogSnapshot`: the organization's tools (with `callable` = approved and not quarantined),
  its tool groups, and the known subject names (for validation only);
- `Principal`: who is calling (an agent, possibly acting for a user);
- `PolicySpec`: the normalized form of one policy of the YAML format (see `policies.document`).

Collections are tuples / frozensets so the values can be shared between threads and cached.
JSON payloads (`input_schema`, `annotations`, pinned values) stay plain dicts and lists: treat
them as read-only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

JSONValue = Any  # str | int | float | bool | None | list[JSONValue] | dict[str, JSONValue]


def _tuple(values: Iterable[str] | None) -> tuple[str, ...]:
    return tuple(values or ())


def _frozenset(values: Iterable[str] | None) -> frozenset[str]:
    return frozenset(values or ())


# --------------------------------------------------------------------------- catalog snapshot


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogTool:
    """One tool of one server of the organization's catalog, as the gateway would serve it.

    `callable` is True only for tools of approved, non-quarantined server versions whose
    definition hash matches the approved one: the engine never allows or lists anything else.
    """

    server: str
    name: str
    title: str = ""
    description: str = ""
    input_schema: Mapping[str, Any] = field(default_factory=dict)
    annotations: Mapping[str, Any] = field(default_factory=dict)
    definition_hash: str = ""
    server_version_id: int | str | None = None
    callable: bool = False

    @property
    def exposed_name(self) -> str:
        """The name agents see: `<server>.<tool>` (server slugs have no dots)."""
        return f"{self.server}.{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogSnapshot:
    """What the engine knows about an organization's catalog and subjects at compile time.

    `tool_groups` maps a group slug to tool references or patterns (`tickets/list_*`,
    `chat.post_message`, an override's exposed name). The subject sets are only used by
    `validate_document` to flag unknown agents, teams, users and tags.
    """

    tools: tuple[CatalogTool, ...] = ()
    tool_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    agent_slugs: frozenset[str] = frozenset()
    team_slugs: frozenset[str] = frozenset()
    user_emails: frozenset[str] = frozenset()
    agent_tags: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # Accept lists from callers but store immutable values (the snapshot is shared).
        object.__setattr__(self, "tools", tuple(self.tools))
        object.__setattr__(
            self, "tool_groups", {slug: _tuple(refs) for slug, refs in self.tool_groups.items()}
        )
        for name in ("agent_slugs", "team_slugs", "user_emails", "agent_tags"):
            object.__setattr__(self, name, _frozenset(getattr(self, name)))

    def with_tool_groups(self, groups: Mapping[str, Iterable[str]]) -> CatalogSnapshot:
        """A copy where `groups` (e.g. a document's `toolGroups`) replace same-named groups."""
        merged = dict(self.tool_groups)
        merged.update({slug: _tuple(refs) for slug, refs in groups.items()})
        return replace(self, tool_groups=merged)


# --------------------------------------------------------------------------- principal


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who calls: an agent of an organization, optionally acting for a user.

    Hashable: the compiled policy caches its per-principal work keyed by this value.
    """

    org_id: int | str
    agent_slug: str
    agent_id: int | str | None = None
    agent_tags: frozenset[str] = frozenset()
    team_slugs: frozenset[str] = frozenset()
    user_email: str | None = None
    user_id: int | str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "agent_tags", _frozenset(self.agent_tags))
        object.__setattr__(self, "team_slugs", _frozenset(self.team_slugs))

    def describe(self) -> str:
        """`agent 'triage-bot' acting for alice@example.com`, for reasons an approver reads."""
        text = f"agent '{self.agent_slug}'"
        if self.user_email:
            text += f" acting for {self.user_email}"
        return text


# --------------------------------------------------------------------------- policy specs


@dataclass(frozen=True, slots=True, kw_only=True)
class Subjects:
    """Who a policy applies to: any match is enough. `agents: ["*"]` means every agent."""

    agents: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    agent_tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("agents", "teams", "users", "agent_tags"):
            object.__setattr__(self, name, _tuple(getattr(self, name)))

    def is_empty(self) -> bool:
        return not (self.agents or self.teams or self.users or self.agent_tags)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolRules:
    """An allow or a deny section: tool groups, whole servers, tools (`server.tool`, patterns)."""

    tool_groups: tuple[str, ...] = ()
    servers: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("tool_groups", "servers", "tools"):
            object.__setattr__(self, name, _tuple(getattr(self, name)))

    def is_empty(self) -> bool:
        return not (self.tool_groups or self.servers or self.tools)


@dataclass(frozen=True, slots=True)
class Pin:
    """A pinned argument value (a wrapper, so that `pinned: null` differs from no pin)."""

    value: JSONValue


@dataclass(frozen=True, slots=True, kw_only=True)
class ArgumentRule:
    """Rules on one top-level argument of a tool. Every constraint present must hold."""

    argument: str
    pinned: Pin | None = None
    enum: tuple[JSONValue, ...] | None = None
    pattern: str | None = None
    max_length: int | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    required: bool = False

    def __post_init__(self) -> None:
        if self.enum is not None:
            object.__setattr__(self, "enum", tuple(self.enum))

    def has_constraints(self) -> bool:
        return (
            self.enum is not None
            or self.pattern is not None
            or self.max_length is not None
            or self.minimum is not None
            or self.maximum is not None
            or self.required
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolArguments:
    """`arguments: {"<tool ref or pattern>": {arg: {...}}}`: the rules for the tools matched."""

    tool: str
    rules: tuple[ArgumentRule, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(self.rules))


@dataclass(frozen=True, slots=True, kw_only=True)
class Override:
    """A tool exposed under another name and/or description, with pinned arguments.

    E.g. `chat.post_to_triage` = `chat.post_message` with `channel` pinned: a "safe variant".
    The name must be `<server>.<name>` on the same server as `tool`.
    """

    name: str
    tool: str
    title: str | None = None
    description: str | None = None
    pin: Mapping[str, JSONValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pin", dict(self.pin))


@dataclass(frozen=True, slots=True, kw_only=True)
class Outbound:
    """Egress hosts allowed for the servers whose tools the policy grants."""

    allow_domains: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow_domains", _tuple(self.allow_domains))


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolLimit:
    """`limits.perTool["<tool ref or pattern>"]`: counted per tool (and per principal)."""

    tool: str
    per_minute: int | None = None
    per_day: int | None = None


LimitScope = Literal["principal", "organization"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Rate limits of a policy.

    `per_minute` / `per_day` count the calls to the tools the policy grants (every call of its
    subjects when it grants nothing: a limits-only policy is a global cap). `per` says whose
    calls share one counter: each principal (agent + acting-for user) or the whole organization.
    """

    per_minute: int | None = None
    per_day: int | None = None
    per: LimitScope = "principal"
    per_tool: tuple[ToolLimit, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "per_tool", tuple(self.per_tool))

    def is_empty(self) -> bool:
        return (
            self.per_minute is None
            and self.per_day is None
            and self.per == "principal"
            and not self.per_tool
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Redaction:
    """Dotted field paths (`user.email`, `items.*.token`) to mask in audit records and results."""

    arguments: tuple[str, ...] = ()
    results: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "arguments", _tuple(self.arguments))
        object.__setattr__(self, "results", _tuple(self.results))

    def is_empty(self) -> bool:
        return not (self.arguments or self.results)


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicySpec:
    """One policy, normalized: what `parse_document` returns and `compile` consumes.

    `consumer` is the YAML shorthand for one agent; it is kept apart from `subjects.agents` so
    that a document written with it exports the same way. A disabled policy (`enabled: false`)
    is kept, validated and exported, but grants and denies nothing: `compile` skips it.
    """

    name: str
    description: str = ""
    enabled: bool = True
    consumer: str | None = None
    subjects: Subjects = field(default_factory=Subjects)
    allow: ToolRules = field(default_factory=ToolRules)
    deny: ToolRules = field(default_factory=ToolRules)
    arguments: tuple[ToolArguments, ...] = ()
    overrides: tuple[Override, ...] = ()
    outbound: Outbound = field(default_factory=Outbound)
    limits: Limits = field(default_factory=Limits)
    redact: Redaction = field(default_factory=Redaction)

    def __post_init__(self) -> None:
        object.__setattr__(self, "arguments", tuple(self.arguments))
        object.__setattr__(self, "overrides", tuple(self.overrides))

    @property
    def agents(self) -> tuple[str, ...]:
        """The agent slugs the policy names, `consumer` included."""
        if self.consumer is None:
            return self.subjects.agents
        return (self.consumer, *self.subjects.agents)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolGroupSpec:
    """A named set of tools across servers, as a document defines it (`toolGroups:`)."""

    slug: str
    tools: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "tools", _tuple(self.tools))


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyDocument:
    """A parsed YAML file: tool groups and policies. One policy without groups is the short form."""

    tool_groups: tuple[ToolGroupSpec, ...] = ()
    policies: tuple[PolicySpec, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "tool_groups", tuple(self.tool_groups))
        object.__setattr__(self, "policies", tuple(self.policies))

    @property
    def is_single_policy(self) -> bool:
        return len(self.policies) == 1 and not self.tool_groups

    def tool_group_map(self) -> dict[str, tuple[str, ...]]:
        return {group.slug: group.tools for group in self.tool_groups}
