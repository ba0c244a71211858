"""Benchmark of the policy decision engine (not a test): `python -m bench.bench_engine`.

An organization with 2,000 tools (100 servers x 20 tools), 50 tool groups and 100 policies
(allow groups, servers and patterns; deny tools; argument rules and pins; overrides; limits)
and 300 agents. Prints the compile time, warm decide() calls per second on one core, and
visible_tools() time for one principal, cold (first call) and warm.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from policies.document import export_document, parse_document, validate_document
from policies.engine import CompiledPolicy, compile
from policies.types import (
    ArgumentRule,
    CatalogSnapshot,
    CatalogTool,
    Limits,
    Override,
    Pin,
    PolicyDocument,
    PolicySpec,
    Principal,
    Subjects,
    ToolArguments,
    ToolGroupSpec,
    ToolLimit,
    ToolRules,
)

SERVERS = 100
TOOLS_PER_SERVER = 20
GROUPS = 50
POLICIES = 100
AGENTS = 300
VERBS = ("list", "get", "search", "create", "update", "delete", "export", "post", "read", "sync")


def build_snapshot(rng: random.Random) -> CatalogSnapshot:
    tools = []
    for s in range(SERVERS):
        for t in range(TOOLS_PER_SERVER):
            verb = VERBS[t % len(VERBS)]
            tools.append(
                CatalogTool(
                    server=f"srv{s}",
                    name=f"{verb}_item{t}",
                    title=f"{verb} item {t}",
                    description=f"{verb.title()} things on server {s}.",
                    input_schema={
                        "type": "object",
                        "properties": {
                            "channel": {"type": "string"},
                            "text": {"type": "string"},
                            "limit": {"type": "integer"},
                        },
                        "required": ["text"],
                    },
                    annotations={"readOnlyHint": verb in ("list", "get", "search", "read")},
                    definition_hash=f"sha256:{s}:{t}",
                    server_version_id=s,
                    callable=rng.random() > 0.02,  # a few quarantined tools
                )
            )
    groups = {}
    for g in range(GROUPS):
        refs = [f"srv{rng.randrange(SERVERS)}/{rng.choice(VERBS)}_*" for _ in range(4)]
        refs += [f"srv{rng.randrange(SERVERS)}.get_item{rng.choice((1, 11))}"]  # the get_ tools
        groups[f"group-{g}"] = tuple(refs)
    return CatalogSnapshot(
        tools=tuple(tools),
        tool_groups=groups,
        agent_slugs=frozenset(f"agent-{a}" for a in range(AGENTS)),
        team_slugs=frozenset(f"team-{t}" for t in range(20)),
    )


def build_policies(rng: random.Random) -> list[PolicySpec]:
    policies = []
    for p in range(POLICIES):
        server = f"srv{p % SERVERS}"
        overrides = ()
        if p % 10 == 0:
            overrides = (
                Override(
                    name=f"{server}.post_to_triage_{p}",
                    tool=f"{server}.post_item7",
                    description="Post to #triage only.",
                    pin={"channel": f"triage-{p}"},
                ),
            )
        policies.append(
            PolicySpec(
                name=f"policy-{p}",
                subjects=Subjects(
                    agents=tuple(f"agent-{a}" for a in rng.sample(range(AGENTS), 3)),
                    teams=(f"team-{p % 20}",),
                ),
                allow=ToolRules(
                    tool_groups=tuple(f"group-{g}" for g in rng.sample(range(GROUPS), 3)),
                    servers=(f"srv{rng.randrange(SERVERS)}",),
                    tools=(f"srv{rng.randrange(SERVERS)}/list_*", f"{server}.post_item7"),
                ),
                deny=ToolRules(
                    tools=(f"{server}/delete_*", f"srv{rng.randrange(SERVERS)}.export_item6")
                ),
                arguments=(
                    ToolArguments(
                        tool=f"{server}.post_item7",
                        rules=(
                            ArgumentRule(argument="text", max_length=4000),
                            ArgumentRule(argument="channel", enum=("triage", "ops", "general")),
                        ),
                    ),
                    ToolArguments(
                        tool=f"{server}/list_*",
                        rules=(ArgumentRule(argument="limit", minimum=1, maximum=100),),
                    ),
                    ToolArguments(
                        tool=f"{server}/search_*",
                        rules=(ArgumentRule(argument="text", pattern=r"[\w .,:-]{1,200}"),),
                    ),
                    ToolArguments(
                        tool=f"{server}/update_*",
                        rules=(ArgumentRule(argument="channel", pinned=Pin("audit")),),
                    ),
                ),
                overrides=overrides,
                limits=Limits(
                    per_minute=120,
                    per_day=10_000,
                    per_tool=(ToolLimit(tool=f"{server}.post_item7", per_minute=5),),
                ),
            )
        )
    return policies


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def principal(a: int) -> Principal:
    return Principal(
        org_id=1,
        agent_id=a,
        agent_slug=f"agent-{a}",
        team_slugs=frozenset({f"team-{a % 20}"}),
        user_id=a % 7,
        user_email=f"user{a % 7}@example.com",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300_000, help="decide() calls to time")
    options = parser.parse_args()
    rng = random.Random(42)
    snapshot = build_snapshot(rng)
    policies = build_policies(rng)

    compile_times = timed(lambda: compile(snapshot, policies, "bench", strict=False), 5)
    compiled: CompiledPolicy = compile(snapshot, policies, "bench", strict=False)
    errors = [p for p in compiled.problems if p.severity == "error"]

    # decide(): a realistic mix for 50 principals over the tools they can see, plus denials.
    principals = [principal(a) for a in range(50)]
    calls = []
    all_names = [t.exposed_name for t in snapshot.tools]
    for p in principals:
        visible = [t.name for t in compiled.visible_tools(p)]
        for name in rng.sample(visible, min(20, len(visible))):
            calls.append((p, name, {"text": "summary of today", "limit": 10, "channel": "ops"}))
        for name in rng.sample(all_names, 10):  # mostly denied
            calls.append((p, name, {"text": "x"}))
    for p, name, arguments in calls:  # warm the caches
        compiled.decide(p, name, arguments)
    allowed = sum(compiled.decide(p, n, a).allowed for p, n, a in calls)
    decide = compiled.decide
    rounds = max(1, options.calls // len(calls))
    # Wall time and this process's CPU time: on a shared machine the CPU figure is the
    # one-core capacity, the wall figure what a busy core happened to deliver.
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        for p, name, arguments in calls:
            decide(p, name, arguments)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    per_second, per_cpu_second = rounds * len(calls) / elapsed, rounds * len(calls) / cpu

    # visible_tools(): cold = first call for a principal (applicable policies, every tool's
    # outcome, schemas without pins); warm = the cached list.
    cold, warm, sizes = [], [], []
    cpu_started = time.process_time()
    for a in range(100, 140):
        p = principal(a)
        cold += timed(lambda p=p: compiled.visible_tools(p), 1)
        warm += timed(lambda p=p: compiled.visible_tools(p), 20)
        sizes.append(len(compiled.visible_tools(p)))
    cold_cpu = (time.process_time() - cpu_started) / 40  # includes the 20 warm calls: ~0
    fresh = compile(snapshot, policies, "bench", strict=False)
    first_ever = timed(lambda: fresh.visible_tools(principal(7)), 1)[0]

    print(
        f"organization: {len(snapshot.tools)} tools on {SERVERS} servers, {GROUPS} groups, "
        f"{len(policies)} policies, {AGENTS} agents"
    )
    print(
        f"compile:                  median {statistics.median(compile_times) * 1000:.1f} ms "
        f"(min {min(compile_times) * 1000:.1f} ms; {len(errors)} compile errors)"
    )
    print(
        f"decide():                 {per_cpu_second:,.0f} calls per CPU second on one core "
        f"({1e6 / per_cpu_second:.2f} us/call; wall: {per_second:,.0f}/s; "
        f"{len(calls)} distinct calls, {allowed / len(calls):.0%} allowed)"
    )
    print(
        f"visible_tools() cold:     {cold_cpu * 1000:.2f} ms CPU per principal; wall "
        f"median {statistics.median(cold) * 1000:.3f} ms, "
        f"max {max(cold) * 1000:.3f} ms (median {statistics.median(sizes):.0f} tools listed; "
        f"first call after compile {first_ever * 1000:.3f} ms)"
    )
    document = PolicyDocument(
        tool_groups=tuple(ToolGroupSpec(slug=k, tools=v) for k, v in snapshot.tool_groups.items()),
        policies=tuple(policies),
    )
    text = export_document(document)
    export_time = min(timed(lambda: export_document(document), 3))
    parse_time = min(timed(lambda: parse_document(text), 3))
    validate_time = min(timed(lambda: validate_document(document, snapshot), 3))
    print(
        f"document ({len(text) // 1024} KiB YAML): export {export_time * 1000:.1f} ms, "
        f"parse {parse_time * 1000:.1f} ms, validate against the catalog "
        f"{validate_time * 1000:.1f} ms"
    )
    print(
        f"visible_tools() warm:     median {statistics.median(warm) * 1e6:.1f} us, "
        f"max {max(warm) * 1e6:.1f} us"
    )


if __name__ == "__main__":
    main()
