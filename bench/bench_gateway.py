"""Gateway overhead benchmark (not a test): the same `echo` call made directly to an SDK upstream
and through the gateway, interleaved in one run, with policy, rate limits off, and the audit
write on, on PostgreSQL + Redis.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gw_gateway_bench \\
    REDIS_URL=redis://127.0.0.1:6379/6 DEBUG=false SECRET_KEY=bench VAULT_MASTER_KEYS=... \\
    .venv/bin/python bench/bench_gateway.py [--seconds 3] [--concurrency 1,8,32]

(DEBUG may stay on: the script only needs a database it may migrate and write to.)

What it does: starts the upstream (an `MCPServer` with one `echo` tool, stateless JSON over
uvicorn) and the gateway (`uvicorn config.asgi:application`) as child processes; registers and
approves the upstream in a fresh organization through the catalog services, applies a policy
allowing `bench.echo`, issues an agent key; then for each concurrency level alternates short
direct and gateway phases (several rounds) with the official SDK client (2026-07-28 era, one
client per worker), and reports:

- latency p50/p99 of each path at concurrency 1 (from interleaved single calls) and the added
  latency (gateway - direct);
- calls/s of each path at each concurrency level;
- CPU ms per call of the gateway process and of the upstream process (utime+stime from /proc);
- the gateway's RSS.
"""

from __future__ import annotations

import argparse
import asyncio
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

CLK = os.sysconf("SC_CLK_TCK")


def serve_upstream(port: int) -> None:
    import uvicorn
    from mcp.server.mcpserver import MCPServer
    from mcp.server.transport_security import TransportSecuritySettings

    server = MCPServer("bench-upstream")

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


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


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


async def _client(url: str, key: str | None):
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    http = httpx2.AsyncClient(headers=headers, timeout=30)
    client = Client(streamable_http_client(url, http_client=http), mode="2026-07-28", cache=None)
    await client.__aenter__()
    return client, http


async def _worker(one, path: str, i: int, deadline: float) -> int:  # type: ignore[no-untyped-def]
    done = 0
    while time.perf_counter() < deadline:
        await one(path, i)
        done += 1
    return done


async def run_bench(
    args: argparse.Namespace, direct_url: str, gw_url: str, key: str, pids: dict[str, int]
) -> dict:
    levels = [int(c) for c in args.concurrency.split(",")]
    top = max(levels)
    direct = [await _client(direct_url, None) for _ in range(top)]
    through = [await _client(gw_url, key) for _ in range(top)]
    tool = {"direct": "echo", "gateway": "bench.echo"}
    clients = {"direct": direct, "gateway": through}

    async def one(path: str, i: int) -> float:
        started = time.perf_counter()
        result = await clients[path][i][0].call_tool(tool[path], {"message": "hello"})
        elapsed = time.perf_counter() - started
        if result.is_error:
            raise RuntimeError(f"{path}: {result.content}")
        return elapsed

    # Warm up both paths (pooled upstream session, compiled policy, key cache).
    for _ in range(50):
        await one("direct", 0)
        await one("gateway", 0)

    # Latency at concurrency 1: strictly interleaved single calls.
    lat: dict[str, list[float]] = {"direct": [], "gateway": []}
    for _ in range(args.latency_calls):
        lat["direct"].append(await one("direct", 0))
        lat["gateway"].append(await one("gateway", 0))

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    report: dict = {
        "latency_ms": {
            path: {"p50": pct(v, 0.50), "p99": pct(v, 0.99), "mean": statistics.mean(v) * 1000}
            for path, v in lat.items()
        }
    }
    report["added_ms"] = {
        "p50": report["latency_ms"]["gateway"]["p50"] - report["latency_ms"]["direct"]["p50"],
        "p99": report["latency_ms"]["gateway"]["p99"] - report["latency_ms"]["direct"]["p99"],
    }

    # Throughput and CPU per call: alternate direct and gateway phases.
    throughput: dict[int, dict[str, float]] = {}
    cpu = {
        "gateway_ms_per_call": [],
        "upstream_ms_per_direct_call": [],
        "upstream_ms_per_gateway_call": [],
    }
    for level in levels:
        totals = {"direct": [0, 0.0], "gateway": [0, 0.0]}
        for _ in range(args.rounds):
            for path in ("direct", "gateway"):
                before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
                deadline = time.perf_counter() + args.seconds
                started = time.perf_counter()
                counts = await asyncio.gather(
                    *(_worker(one, path, i, deadline) for i in range(level))
                )
                done = sum(counts)
                elapsed = time.perf_counter() - started
                after = {name: _cpu_seconds(pid) for name, pid in pids.items()}
                totals[path][0] += done
                totals[path][1] += elapsed
                if path == "gateway":
                    cpu["gateway_ms_per_call"].append(
                        (after["gateway"] - before["gateway"]) * 1000 / done
                    )
                    cpu["upstream_ms_per_gateway_call"].append(
                        (after["upstream"] - before["upstream"]) * 1000 / done
                    )
                else:
                    cpu["upstream_ms_per_direct_call"].append(
                        (after["upstream"] - before["upstream"]) * 1000 / done
                    )
        throughput[level] = {path: n / secs for path, (n, secs) in totals.items()}
    report["calls_per_s"] = throughput
    report["cpu_ms_per_call"] = {k: statistics.median(v) for k, v in cpu.items()}
    report["gateway_rss_mb"] = _rss_mb(pids["gateway"])
    for client, http in reversed(direct + through):  # LIFO: anyio cancel scopes nest
        await client.__aexit__(None, None, None)
        await http.aclose()
    return report


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one phase")
    parser.add_argument(
        "--rounds", type=int, default=2, help="direct/gateway phase pairs per level"
    )
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--latency-calls", type=int, default=1000)
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

    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"}
    up_port, gw_port = _free_port(), _free_port()
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
                "--log-level", "warning", "--no-access-log", "--lifespan", "on",
            ],
            env={**env, "CATALOG_ALLOW_PRIVATE_NETWORKS": "true"},
            cwd=ROOT,
        )  # fmt: skip
        procs.append(gateway)
        _wait_port(gw_port)
        report = asyncio.run(
            run_bench(
                args,
                f"http://127.0.0.1:{up_port}/mcp",
                f"http://127.0.0.1:{gw_port}/mcp/{slug}/",
                key,
                {"gateway": gateway.pid, "upstream": upstream.pid},
            )
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
    lat, added = report["latency_ms"], report["added_ms"]
    print(f"latency at c=1 ({args.latency_calls} interleaved calls each), ms:")
    for path in ("direct", "gateway"):
        print(f"  {path:8} p50 {lat[path]['p50']:.2f}  p99 {lat[path]['p99']:.2f}")
    print(
        f"  added    p50 {added['p50']:.2f}  p99 {added['p99']:.2f}  "
        f"(gateway/direct p50 ratio {lat['gateway']['p50'] / lat['direct']['p50']:.2f})"
    )
    print("calls/s:")
    for level, values in report["calls_per_s"].items():
        ratio = values["gateway"] / values["direct"]
        print(
            f"  c={level:<3} direct {values['direct']:7.0f}  gateway {values['gateway']:7.0f}  ratio {ratio:.2f}"
        )
    cpu = report["cpu_ms_per_call"]
    print(
        f"CPU ms/call: gateway {cpu['gateway_ms_per_call']:.2f}, upstream {cpu['upstream_ms_per_direct_call']:.2f} "
        f"(ratio {cpu['gateway_ms_per_call'] / cpu['upstream_ms_per_direct_call']:.2f})"
    )
    print(f"gateway RSS: {report['gateway_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
