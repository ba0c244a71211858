"""Property: the engine allows exactly what an independent, naive reading of the policies allows.

For random catalogs (some tools not callable), groups, overrides, policies and principals:
a tool is allowed if and only if it is callable, some applicable policy's allow rule names it
and no applicable policy's deny rule names it (a deny on a real tool also names its variants).
The oracle below re-implements that with `fnmatch`, not with the engine's own matching.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.engine import compile
from policies.types import (
    CatalogSnapshot,
    CatalogTool,
    Override,
    PolicySpec,
    Principal,
    Subjects,
    ToolRules,
)

SERVERS = ("s1", "s2", "s3")
TOOL_NAMES = ("read", "read_all", "write", "delete", "list.items")
AGENTS = ("a1", "a2", "a3")
TEAMS = ("t1", "t2")
TAGS = ("g1", "g2")
USERS = ("u@x.test", "v@x.test")
GROUPS = ("grp1", "grp2", "grp3")


@dataclass(frozen=True)
class World:
    snapshot: CatalogSnapshot
    policies: tuple[PolicySpec, ...]
    overrides: dict[str, str]  # variant name -> real exposed name


def split(ref: str) -> tuple[str, str]:
    separator = "/" if "/" in ref else "."
    server, _, tool = ref.partition(separator)
    return server, tool


def ref_names(ref: str, name: str) -> bool:
    server_glob, tool_glob = split(ref)
    server, _, tool = name.partition(".")
    return fnmatchcase(server, server_glob) and fnmatchcase(tool, tool_glob)


refs = st.one_of(
    st.builds(
        lambda s, t, sep: f"{s}{sep}{t}",
        st.sampled_from(SERVERS),
        st.sampled_from((*TOOL_NAMES, "variant_0", "nope")),
        st.sampled_from(("/", ".")),
    ),
    st.builds(
        lambda s, t: f"{s}/{t}",
        st.sampled_from((*SERVERS, "*", "s*")),
        st.sampled_from(("*", "read*", "*e", "list.*", "*_*", "variant_*")),
    ),
)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    tools = []
    for server in SERVERS:
        for name in draw(st.lists(st.sampled_from(TOOL_NAMES), unique=True, max_size=5)):
            tools.append(
                CatalogTool(
                    server=server,
                    name=name,
                    input_schema={"type": "object", "properties": {"x": {"type": "string"}}},
                    callable=draw(st.booleans()) or draw(st.booleans()),  # mostly callable
                )
            )
    real_names = [t.exposed_name for t in tools]
    overrides: dict[str, str] = {}
    override_specs: list[Override] = []
    if real_names:
        for index in range(draw(st.integers(0, 2))):
            target = draw(st.sampled_from(real_names))
            name = f"{target.split('.')[0]}.variant_{index}"
            if name in overrides:
                continue
            overrides[name] = target
            override_specs.append(Override(name=name, tool=target, pin={"x": "pinned"}))
    groups = {
        g: tuple(draw(st.lists(refs, max_size=3))) for g in draw(st.sets(st.sampled_from(GROUPS)))
    }

    def rules() -> ToolRules:
        return ToolRules(
            tool_groups=tuple(draw(st.lists(st.sampled_from(GROUPS), unique=True, max_size=2))),
            servers=tuple(draw(st.lists(st.sampled_from(SERVERS), unique=True, max_size=1))),
            tools=tuple(draw(st.lists(refs, unique=True, max_size=3))),
        )

    policies = []
    unassigned = list(override_specs)
    for index in range(draw(st.integers(1, 4))):
        subjects = Subjects(
            agents=tuple(draw(st.lists(st.sampled_from((*AGENTS, "*")), unique=True, max_size=2))),
            teams=tuple(draw(st.lists(st.sampled_from(TEAMS), unique=True, max_size=1))),
            users=tuple(draw(st.lists(st.sampled_from(USERS), unique=True, max_size=1))),
            agent_tags=tuple(draw(st.lists(st.sampled_from(TAGS), unique=True, max_size=1))),
        )
        if subjects.is_empty():
            subjects = Subjects(agents=(draw(st.sampled_from(AGENTS)),))
        mine = tuple(o for o in unassigned if draw(st.booleans()))
        unassigned = [o for o in unassigned if o not in mine]
        policies.append(
            PolicySpec(
                name=f"p{index}", subjects=subjects, allow=rules(), deny=rules(), overrides=mine
            )
        )
    # Overrides no policy took are not exposed at all.
    for override in unassigned:
        del overrides[override.name]
    snapshot = CatalogSnapshot(tools=tuple(tools), tool_groups=groups)
    return World(snapshot=snapshot, policies=tuple(policies), overrides=overrides)


principals = st.builds(
    lambda agent, teams, tags, user: Principal(
        org_id=1, agent_slug=agent, team_slugs=teams, agent_tags=tags, user_email=user
    ),
    st.sampled_from(AGENTS),
    st.frozensets(st.sampled_from(TEAMS)),
    st.frozensets(st.sampled_from(TAGS)),
    st.one_of(st.none(), st.sampled_from(USERS)),
)


def applies(spec: PolicySpec, principal: Principal) -> bool:
    return (
        "*" in spec.agents
        or principal.agent_slug in spec.agents
        or bool(set(spec.subjects.teams) & principal.team_slugs)
        or bool(set(spec.subjects.agent_tags) & principal.agent_tags)
        or principal.user_email in spec.subjects.users
    )


def names(rules: ToolRules, name: str, groups: dict[str, tuple[str, ...]]) -> bool:
    server = name.partition(".")[0]
    return (
        server in rules.servers
        or any(ref_names(ref, name) for ref in rules.tools)
        or any(ref_names(ref, name) for g in rules.tool_groups for ref in groups.get(g, ()))
    )


def oracle_allows(world: World, principal: Principal, name: str) -> bool:
    real = world.overrides.get(name, name)
    tool = next(t for t in world.snapshot.tools if t.exposed_name == real)
    if not tool.callable:
        return False
    groups = dict(world.snapshot.tool_groups)
    mine = [p for p in world.policies if applies(p, principal)]
    for spec in mine:
        if names(spec.deny, name, groups) or (name != real and names(spec.deny, real, groups)):
            return False
    return any(
        names(spec.allow, name, groups) or any(o.name == name for o in spec.overrides)
        for spec in mine
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds(), principal=principals, toolset=st.sampled_from((None, *GROUPS)))
def test_allowed_exactly_when_an_allow_names_it_no_deny_does_and_it_is_callable(
    world: World, principal: Principal, toolset: str | None
) -> None:
    compiled = compile(world.snapshot, list(world.policies), "prop")
    exposed = [t.exposed_name for t in world.snapshot.tools] + list(world.overrides)
    expected = {name for name in exposed if oracle_allows(world, principal, name)}

    for name in exposed:
        decision = compiled.decide(principal, name, {"x": "sent"})
        assert decision.allowed is (name in expected), (name, decision.reasons)
        if decision.allowed:
            real = world.overrides.get(name, name)
            assert decision.tool is not None and decision.tool.exposed_name == real
            assert any(t.callable for t in world.snapshot.tools if t.exposed_name == real)
        else:
            assert decision.reasons and decision.reasons[0].startswith("denied: ")

    assert [t.name for t in compiled.visible_tools(principal)] == sorted(expected)

    if toolset is not None:
        members = {
            n
            for n in exposed
            if any(ref_names(ref, n) for ref in world.snapshot.tool_groups.get(toolset, ()))
        }
        listed = [t.name for t in compiled.visible_tools(principal, toolset)]
        assert listed == sorted(expected & members)
        for name in exposed:
            through = compiled.decide(principal, name, {}, toolset=toolset).allowed
            assert through is (name in expected and name in members)

    assert not compiled.decide(principal, "s1.never_defined", {}).allowed
