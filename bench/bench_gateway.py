"""Gateway overhead benchmark (not a test): the same `echo` call made directly to an SDK upstream
and through the gateway, interleaved in one run, with policy and the audit write on, on
PostgreSQL + Redis.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gw_gateway_bench \\
    REDIS_URL=redis://127.0.0.1:6379/6 \\
    .venv/bin/python bench/bench_gateway.py [--latency-calls 2000] [--seconds 2] [--rounds 4]
        [--concurrency 1,8,32] [--repeat 3] [--json out.json] [--profile profile.svg]

The gateway runs as in production (DEBUG=false, throwaway SECRET_KEY and vault key unless set,
loopback upstreams allowed); the script needs a database it may migrate and write to.

What it does: starts the upstream (an `MCPServer` with one `echo` tool, stateless JSON over
uvicorn) and the gateway (`uvicorn config.asgi:application --loop uvloop --http httptools`, as
in production) as child processes; registers and approves the upstream in a fresh organization
through the catalog services, applies a policy allowing `bench.echo`, issues an agent key; then:

1. warm-up: both paths (pooled upstream session, compiled policy, key cache, JIT-free caches);
2. latency at concurrency 1: direct and gateway calls strictly interleaved (d, g, d, g, ...)
   so that machine load hits both equally; p50/p99 and the added latency (gateway - direct),
   also as ratios of the direct p50 of the same run. Interleaved with them, the two parts of the
   added latency that are not the gateway's code: a bare proxy (bench/floor_proxy.py: the same
   server stack and upstream client, nothing enforced) for the cost of the extra HTTP hop, and
   one durable audit commit per round (`AuditProbe`: a `tool.call`-sized record through
   `audit.services.save_events`, as the gateway's writer commits a lone call's record);
3. throughput: for each concurrency level, several rounds of a short direct phase followed by
   a short gateway phase (again interleaved); calls/s of each and their ratio;
4. CPU ms per call of the gateway process and of the upstream process, per phase (utime +
   stime of every thread, from /proc), median over the phases; the gateway's RSS now and peak;
5. the machine's load average (other people's work on a shared machine skews everything)
   before and after, printed with the figures.

`--repeat N` runs steps 1-5 N times against the same processes and ends with the median,
minimum and maximum of each figure over the runs, and each of the issue's targets judged on the
median (bench/summary.py): on a shared 2-CPU machine one run's milliseconds move by 20-30 %
with the load, so a single run cannot say "met".

`--profile out.svg` additionally runs py-spy on the gateway for a c=8 phase after the
measurements (so the sampler does not skew them); `.txt` gives collapsed stacks instead;
`--profile-gil` samples only the thread holding the GIL (CPU rather than waiting).

`--client-era legacy` makes the benchmark's client (direct and through the gateway) speak
2025-11-25 with `initialize` instead of 2026-07-28 (the JSON report records `client_era`).

`GATEWAY_LEAN_UPSTREAM=false` in the environment makes the gateway send every upstream call
through the SDK client instead of the lean path (an A/B of gateway.lean); the JSON report
records which (`lean_upstream`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# The benchmark's own client must not log every HTTP request (it would eat the CPU we measure).
os.environ.setdefault("LOG_LEVEL", "WARNING")
# Production mode (DEBUG off: no query log, no debug cursor wrappers), with throwaway secrets;
# the upstream runs on loopback, which production refuses unless an operator allows it.
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECRET_KEY", "bench-" + os.urandom(24).hex())
os.environ.setdefault("VAULT_MASTER_KEYS", "bench:" + base64.b64encode(os.urandom(32)).decode())
os.environ.setdefault("CATALOG_ALLOW_LOOPBACK", "true")
os.environ.setdefault("CATALOG_ALLOW_PRIVATE_NETWORKS", "true")

from bench.summary import TARGETS, summarize, verdicts  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def serve_upstream(port: int) -> None:
    import uvicorn
    from mcp.server.mcpserver import MCPServer
    from mcp.server.transport_security import TransportSecuritySettings

    # WARNING, as the gateway runs: MCPServer's default (INFO) logs a line per 2025-era request
    # ("Terminating session"), which would bill the direct path for logging the gateway skips.
    server = MCPServer("bench-upstream", log_level="WARNING")

    @server.tool(annotations={"readOnlyHint": True})
    def echo(message: str) -> str:
        """Return the message unchanged."""
        return message

    hosts = ["127.0.0.1", f"127.0.0.1:{port}"]
    app = server.streamable_http_app(
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(allowed_hosts=hosts, allowed_origins=[]),
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _cpu_seconds(pid: int, which: str = "both") -> float:
    """utime + stime (or only "sys") of every thread of `pid`, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    user, system = int(fields[11]), int(fields[12])
    return (system if which == "sys" else user + system) / CLK


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def setup_catalog(upstream_url: str) -> tuple[str, str]:
    """A fresh org with the upstream approved and a policy allowing bench.echo; (slug, key)."""
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    settings.CATALOG_ALLOW_PRIVATE_NETWORKS = True
    from catalog import services as catalog
    from policies.services import policy_apply
    from tenants import secrets
    from tenants.models import Agent, AgentKey, Membership, User
    from tenants.services import org_create

    run = uuid.uuid4().hex[:8]
    owner = User.objects.create_user(email=f"owner-{run}@bench.test", password=None)
    approver = User.objects.create_user(email=f"approver-{run}@bench.test", password=None)
    org = org_create(name=f"Bench {run}", slug=f"bench-{run}", owner=owner)
    Membership.objects.create(organization=org, user=approver, role="approver")
    server = catalog.server_create(
        org=org,
        actor=owner,
        name="Bench",
        slug="bench",
        url=upstream_url,
        egress_hosts=["127.0.0.1"],
    )
    version = catalog.server_fetch_tools(org=org, actor=owner, server=server)
    catalog.version_submit(org=org, actor=owner, version=version)
    catalog.version_approve(org=org, actor=approver, version=version, acknowledge_findings=True)
    agent = Agent.objects.create(organization=org, name="Bench agent", slug="bench-agent")
    result = policy_apply(
        org=org,
        actor=owner,
        text='name: bench\nconsumer: bench-agent\nallow:\n  tools: ["bench.echo"]\n',
        dry_run=False,
    )
    assert result.applied, result.errors
    issued = secrets.issue_secret(secrets.AGENT_KEY_KIND)
    AgentKey.objects.create(
        organization=org, agent=agent, prefix=issued.prefix, key_hash=issued.digest
    )
    return org.slug, issued.plaintext


async def _client(url: str, key: str | None, mode: str = "2026-07-28"):
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    http = httpx2.AsyncClient(headers=headers, timeout=30)
    client = Client(streamable_http_client(url, http_client=http), mode=mode, cache=None)
    await client.__aenter__()
    return client, http


async def _worker(one, path: str, i: int, deadline: float) -> int:  # type: ignore[no-untyped-def]
    done = 0
    while time.perf_counter() < deadline:
        await one(path, i)
        done += 1
    return done


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


class AuditProbe:
    """One durable audit commit, as the gateway's writer makes it for a lone call: a
    `tool.call`-sized record through `audit.services.save_events` on a thread of its own with
    its own connection (one INSERT in autocommit, PostgreSQL's WAL flush before it returns).
    Timed inside the thread, so the figure is the database's and the insert code's, without the
    hand-off. Its records are the benchmark organization's, action `bench.audit_probe`."""

    def __init__(self, org_slug: str) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._org_slug = org_slug
        self._org: object | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-probe")

    def _commit(self) -> float:
        from audit import services
        from tenants.models import Organization

        if self._org is None:
            self._org = Organization.objects.get(slug=self._org_slug)
        event = services.build_event(
            org=self._org,
            action="bench.audit_probe",
            details=PROBE_DETAILS,
            server="bench",
            tool="echo",
            decision="allow",
            latency_ms=1.0,
            upstream_latency_ms=1.0,
        )
        started = time.perf_counter()
        services.save_events([event])
        return time.perf_counter() - started

    async def commit(self) -> float:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._commit)

    def close(self) -> None:
        from django.db import connections

        self._thread.submit(connections.close_all).result(timeout=10)
        self._thread.shutdown()


# The details of a bench.echo call's record, for the probe's record to be the same size.
PROBE_DETAILS = {
    "exposed_tool": "bench.echo",
    "arguments": {"message": "hello"},
    "protocol_version": "2026-07-28",
    "matched_rules": ["policy:bench/allow/tools[0]"],
    "reasons": ["allowed: tool bench.echo is allowed by policy 'bench' (allow.tools[0])"],
    "policy_version": "2",
    "server_version_id": 1,
    "definition_hash": "0" * 64,
}


async def run_bench(
    args: argparse.Namespace,
    urls: dict[str, str],
    key: str,
    pids: dict[str, int],
    probe: AuditProbe,
    profile: bool = True,
) -> dict:
    levels = [int(c) for c in args.concurrency.split(",")]
    top = max(levels)
    direct = [await _client(urls["direct"], None, args.client_era) for _ in range(top)]
    through = [await _client(urls["gateway"], key, args.client_era) for _ in range(top)]
    floor = [await _client(urls["floor"], None, args.client_era)]
    tool = {"direct": "echo", "gateway": "bench.echo", "floor": "echo"}
    clients = {"direct": direct, "gateway": through, "floor": floor}

    async def one(path: str, i: int) -> float:
        started = time.perf_counter()
        result = await clients[path][i][0].call_tool(tool[path], {"message": "hello"})
        elapsed = time.perf_counter() - started
        if result.is_error:
            raise RuntimeError(f"{path}: {result.content}")
        return elapsed

    async def phase(path: str, level: int, seconds: float) -> tuple[int, float, dict[str, float]]:
        before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
        sys_before = _cpu_seconds(pids["gateway"], "sys")
        started = time.perf_counter()
        deadline = started + seconds
        counts = await asyncio.gather(*(_worker(one, path, i, deadline) for i in range(level)))
        elapsed = time.perf_counter() - started
        after = {name: _cpu_seconds(pid) for name, pid in pids.items()}
        used = {n: after[n] - before[n] for n in pids}
        used["gateway_sys"] = _cpu_seconds(pids["gateway"], "sys") - sys_before
        return sum(counts), elapsed, used

    # Warm-up: single calls, then a short burst at the top concurrency on both paths.
    for _ in range(args.warmup):
        await one("direct", 0)
        await one("gateway", 0)
        await one("floor", 0)
        await probe.commit()
    for path in ("direct", "gateway"):
        await phase(path, top, 1.0)

    report: dict = {"load_before": _load()}

    # Latency at concurrency 1: strictly interleaved single calls (direct, gateway, bare
    # proxy), each round ending with one audit commit probe, so all four see the same rhythm.
    lat: dict[str, list[float]] = {"direct": [], "gateway": [], "floor": []}
    commits: list[float] = []
    for _ in range(args.latency_calls):
        for path in ("direct", "gateway", "floor"):
            lat[path].append(await one(path, 0))
        commits.append(await probe.commit())
    latency = {
        path: {"p50": _pct(v, 0.50), "p99": _pct(v, 0.99), "mean": statistics.mean(v) * 1000}
        for path, v in lat.items()
    }
    base = latency["direct"]["p50"]
    added = {q: latency["gateway"][q] - latency["direct"][q] for q in ("p50", "p99", "mean")}
    report["latency_ms"] = latency
    report["added_ms"] = added
    report["added_ratio_of_direct_p50"] = {q: v / base for q, v in added.items()}
    # What no gateway of this design avoids on this machine: the extra HTTP hop (the bare
    # proxy's added latency) and one durable audit commit per call.
    report["floor_added_ms"] = {
        q: latency["floor"][q] - latency["direct"][q] for q in ("p50", "p99", "mean")
    }
    report["audit_commit_ms"] = {"p50": _pct(commits, 0.50), "p99": _pct(commits, 0.99)}

    # Throughput and CPU per call: alternate short direct and gateway phases.
    throughput: dict[int, dict[str, float]] = {}
    cpu: dict[str, list[float]] = {
        "gateway_ms_per_call": [],
        "upstream_ms_per_direct_call": [],
        "upstream_ms_per_gateway_call": [],
        "gateway_sys_ms_per_call": [],
    }
    by_level: dict[int, dict[str, float]] = {}
    for level in levels:
        totals = {"direct": [0, 0.0], "gateway": [0, 0.0]}
        # CPU of this level's phases: (gateway process, upstream) seconds and calls, per path.
        spent = {"gateway": [0.0, 0.0, 0], "direct": [0.0, 0.0, 0]}
        for _ in range(args.rounds):
            for path in ("direct", "gateway"):
                done, elapsed, used = await phase(path, level, args.seconds)
                totals[path][0] += done
                totals[path][1] += elapsed
                spent[path][0] += used["gateway"]
                spent[path][1] += used["upstream"]
                spent[path][2] += done
                if path == "gateway":
                    cpu["gateway_ms_per_call"].append(used["gateway"] * 1000 / done)
                    cpu["gateway_sys_ms_per_call"].append(used["gateway_sys"] * 1000 / done)
                    cpu["upstream_ms_per_gateway_call"].append(used["upstream"] * 1000 / done)
                else:
                    cpu["upstream_ms_per_direct_call"].append(used["upstream"] * 1000 / done)
        rates = {path: n / secs for path, (n, secs) in totals.items()}
        rates["ratio"] = rates["gateway"] / rates["direct"]
        throughput[level] = rates
        gateway_ms = spent["gateway"][0] * 1000 / spent["gateway"][2]
        upstream_ms = spent["direct"][1] * 1000 / spent["direct"][2]
        by_level[level] = {
            "gateway_ms_per_call": gateway_ms,
            "upstream_ms_per_direct_call": upstream_ms,
            "ratio": gateway_ms / upstream_ms,
        }
    report["calls_per_s"] = throughput
    # Per concurrency level: at c=1 every call is its own audit batch and runs with cold
    # caches; under load batches grow and the ratio falls.
    report["cpu_ms_per_call_by_level"] = by_level
    report["cpu_ms_per_call"] = {k: statistics.median(v) for k, v in cpu.items()}
    report["cpu_ratio_gateway_to_upstream"] = (
        report["cpu_ms_per_call"]["gateway_ms_per_call"]
        / report["cpu_ms_per_call"]["upstream_ms_per_direct_call"]
    )
    report["gateway_rss_mb"] = _rss_mb(pids["gateway"])
    report["gateway_peak_rss_mb"] = _rss_mb(pids["gateway"], "VmHWM")
    report["upstream_rss_mb"] = _rss_mb(pids["upstream"])
    report["load_after"] = _load()

    if args.profile and profile:
        out = Path(args.profile)
        fmt = "raw" if out.suffix == ".txt" else "flamegraph"
        spy = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
                str(pids["gateway"]), "--duration", str(args.profile_seconds), "--rate", "200",
                "--format", fmt, "--output", str(out), "--nonblocking",
                *(["--gil"] if args.profile_gil else []),
            ],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        await asyncio.sleep(1.0)  # let py-spy attach
        await phase("gateway", 8, args.profile_seconds)
        spy.wait(timeout=60)
        report["profile"] = str(out)

    for client, http in reversed(direct + through + floor):  # LIFO: anyio cancel scopes nest
        await client.__aexit__(None, None, None)
        await http.aclose()
    return report


def _print(report: dict, args: argparse.Namespace) -> None:
    lat, added, ratio = (
        report["latency_ms"],
        report["added_ms"],
        report["added_ratio_of_direct_p50"],
    )
    print(f"load average before: {report['load_before']}; after: {report['load_after']}")
    print(f"latency at c=1 ({args.latency_calls} interleaved calls each), ms:")
    for path in ("direct", "gateway", "floor"):
        print(
            f"  {path:8} p50 {lat[path]['p50']:6.2f}  p99 {lat[path]['p99']:6.2f}  "
            f"mean {lat[path]['mean']:6.2f}"
        )
    print(
        f"  added    p50 {added['p50']:6.2f}  p99 {added['p99']:6.2f}  mean {added['mean']:6.2f}"
        f"   (x direct p50: {ratio['p50']:.2f} / {ratio['p99']:.2f} / {ratio['mean']:.2f};"
        f" gateway/direct p50 {lat['gateway']['p50'] / lat['direct']['p50']:.2f})"
    )
    hop, commit = report["floor_added_ms"], report["audit_commit_ms"]
    print(
        f"  of which not the gateway's code: the bare proxy adds p50 {hop['p50']:.2f}"
        f" p99 {hop['p99']:.2f}; one durable audit commit takes p50 {commit['p50']:.2f}"
        f" p99 {commit['p99']:.2f}; the rest, p50 {added['p50'] - hop['p50'] - commit['p50']:.2f},"
        " is the gateway's own work"
    )
    print("calls/s (gateway/direct ratio):")
    for level, values in report["calls_per_s"].items():
        print(
            f"  c={level:<3} direct {values['direct']:7.0f}  gateway {values['gateway']:7.0f}  "
            f"ratio {values['ratio']:.2f}"
        )
    cpu = report["cpu_ms_per_call"]
    print(
        f"CPU ms/call: gateway {cpu['gateway_ms_per_call']:.2f} "
        f"(kernel {cpu['gateway_sys_ms_per_call']:.2f}), upstream "
        f"{cpu['upstream_ms_per_direct_call']:.2f} per direct call and "
        f"{cpu['upstream_ms_per_gateway_call']:.2f} per gateway call "
        f"(gateway/upstream ratio {report['cpu_ratio_gateway_to_upstream']:.2f})"
    )
    print(
        "  per level: "
        + ", ".join(
            f"c={level} {values['gateway_ms_per_call']:.2f} / "
            f"{values['upstream_ms_per_direct_call']:.2f} ms = {values['ratio']:.2f}"
            for level, values in report["cpu_ms_per_call_by_level"].items()
        )
    )
    print(
        f"RSS: gateway {report['gateway_rss_mb']:.0f} MB (peak {report['gateway_peak_rss_mb']:.0f}),"
        f" upstream {report['upstream_rss_mb']:.0f} MB"
    )
    if report.get("profile"):
        print(f"profile of the gateway at c=8: {report['profile']}")


def _print_summary(reports: list[dict]) -> None:
    summary = summarize(reports)
    print(f"over {len(reports)} runs: median (min - max)")
    for name, values in summary.items():
        print(f"  {name:32} {values['median']:8.2f}  ({values['min']:.2f} - {values['max']:.2f})")
    judged = verdicts(summary)
    print(
        "targets (median): "
        + ", ".join(f"{name} <= {TARGETS[name]:g}: {verdict}" for name, verdict in judged.items())
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one phase")
    parser.add_argument(
        "--rounds", type=int, default=4, help="direct/gateway phase pairs per level"
    )
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--latency-calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the whole measurement this many times against the same processes and print "
        "the median and range of each figure (the machine's noise, made visible)",
    )
    parser.add_argument("--json", help="also write the report here")
    parser.add_argument("--profile", help="py-spy output (.svg flame graph or .txt collapsed)")
    parser.add_argument("--profile-seconds", type=int, default=15)
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="sample only the thread holding the GIL (where the CPU goes, not where time waits)",
    )
    parser.add_argument(
        "--gateway-args", default="", help="extra uvicorn arguments for the gateway process"
    )
    parser.add_argument(
        "--client-era",
        default="2026-07-28",
        help="the benchmark client's protocol: 2026-07-28 (stateless; the gateway's fast path) "
        "or legacy (2025-11-25 with initialize; served by the SDK)",
    )
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return 0
    if not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get(
        "REDIS_URL"
    ):
        print(
            "Set DATABASE_URL (PostgreSQL) and REDIS_URL: the benchmark measures production mode."
        )
        return 2

    # The gateway logs as in production: LOG_LEVEL INFO unless GATEWAY_LOG_LEVEL says otherwise.
    log_level = os.environ.get("GATEWAY_LOG_LEVEL", "INFO")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": log_level}
    up_port, gw_port, floor_port = _free_port(), _free_port(), _free_port()
    upstream = subprocess.Popen(
        [sys.executable, __file__, "--serve-upstream", str(up_port)], env=env
    )
    procs = [upstream]
    try:
        _wait_port(up_port)
        slug, key = setup_catalog(f"http://127.0.0.1:{up_port}/mcp")
        gateway = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "config.asgi:application",
                "--host", "127.0.0.1", "--port", str(gw_port),
                "--loop", "uvloop", "--http", "httptools",
                "--log-level", "warning", "--no-access-log", "--lifespan", "on",
                *args.gateway_args.split(),
            ],
            env={**env, "CATALOG_ALLOW_PRIVATE_NETWORKS": "true"},
            cwd=ROOT,
        )  # fmt: skip
        procs.append(gateway)
        floor = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "bench.floor_proxy:app",
                "--host", "127.0.0.1", "--port", str(floor_port),
                "--loop", "uvloop", "--http", "httptools",
                "--log-level", "warning", "--no-access-log", "--lifespan", "on",
            ],
            env={**env, "FLOOR_UPSTREAM": f"http://127.0.0.1:{up_port}/mcp"},
            cwd=ROOT,
        )  # fmt: skip
        procs.append(floor)
        _wait_port(gw_port)
        _wait_port(floor_port)
        started = time.monotonic()
        pids = {"gateway": gateway.pid, "upstream": upstream.pid}
        urls = {
            "direct": f"http://127.0.0.1:{up_port}/mcp",
            "gateway": f"http://127.0.0.1:{gw_port}/mcp/{slug}/",
            "floor": f"http://127.0.0.1:{floor_port}/mcp",
        }
        probe = AuditProbe(slug)

        async def runs() -> list[dict]:
            # The profile (if asked for) only after the last run: it must not skew the others.
            try:
                return [
                    await run_bench(args, urls, key, pids, probe, profile=n == args.repeat - 1)
                    for n in range(args.repeat)
                ]
            finally:
                probe.close()

        reports = asyncio.run(runs())
        for report in reports:
            # Which upstream path the gateway used (gateway.lean; false: the SDK client for all).
            report["lean_upstream"] = env.get("GATEWAY_LEAN_UPSTREAM", "true")
            report["client_era"] = args.client_era
        reports[-1]["run_seconds"] = round(time.monotonic() - started, 1)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
    for n, report in enumerate(reports, start=1):
        if len(reports) > 1:
            print(f"--- run {n} of {len(reports)}")
        _print(report, args)
    if len(reports) > 1:
        print("---")
        _print_summary(reports)
    if args.json:
        if len(reports) == 1:
            out: dict = reports[0]
        else:
            summary = summarize(reports)
            out = {"runs": reports, "summary": summary, "targets": verdicts(summary)}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
