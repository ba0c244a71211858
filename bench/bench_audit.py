"""Audit benchmark (not a test): insert rate through `audit.record`, audit page queries and a
streamed export at N rows, on PostgreSQL.

    createdb -h 127.0.0.1 -U postgres gw_audit_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gw_audit_bench \\
        .venv/bin/python bench/bench_audit.py --rows 1000000

It migrates the database, TRUNCATEs the audit tables of that database (never point it at real
data), inserts `--record-rows` rows one transaction each through audit.record, fills the table to
`--rows` with set-based SQL, then times the audit page (first page and a deep keyset page for
several filters, printing whether each plan uses an index), the export (in a child process, so
its peak RSS is the export's own), and sealing of `--seal-rows` rows.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

SLUG = "bench-audit"


def _org():  # type: ignore[no-untyped-def]
    from tenants.models import Organization

    org, _ = Organization.objects.get_or_create(slug=SLUG, defaults={"name": "Bench"})
    return org


def _vm(field: str) -> float:
    """Current (VmRSS) or peak (VmHWM) resident memory of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_record(n: int, per_transaction: int = 1) -> None:
    import audit
    from audit.context import RequestContext, reset_context, set_context

    org = _org()
    token = set_context(RequestContext(request_id="bench-record-0001", source_ip="10.0.0.1"))
    start = time.perf_counter()
    try:
        for first in range(0, n, per_transaction):
            with transaction.atomic():
                for i in range(first, min(first + per_transaction, n)):
                    audit.record(
                        org=org,
                        action="tool.call",
                        target_type="catalog.tool",
                        target_id=str(i % 40),
                        target_label=f"tickets.tool_{i % 40}",
                        details={"arguments": {"project": "OPS", "token": "x"}, "reasons": []},
                        server="tickets",
                        tool=f"tool_{i % 40}",
                        decision="allow",
                        latency_ms=12.5,
                        upstream_latency_ms=10.0,
                    )
    finally:
        reset_context(token)
    elapsed = time.perf_counter() - start
    print(
        f"insert via audit.record: {n} rows in {elapsed:.2f}s = {n / elapsed:,.0f} rows/s "
        f"({per_transaction} row(s) per transaction)"
    )


FILL_SQL = """
INSERT INTO audit_auditevent (organization_id, occurred_at, action, outcome, actor_user_id,
    actor_label, agent_id, agent_label, on_behalf_of_id, on_behalf_of_label, target_type,
    target_id, target_label, server, tool, decision, error_class, latency_ms,
    upstream_latency_ms, details, request_id, source_ip)
SELECT %(org)s,
       now() - interval '30 days' + (g * interval '30 days' / %(n)s),
       CASE WHEN g %% 10 = 0 THEN 'member.invited' ELSE 'tool.call' END,
       CASE WHEN g %% 50 = 0 THEN 'denied' WHEN g %% 23 = 0 THEN 'failure' ELSE 'success' END,
       CASE WHEN g %% 10 = 0 THEN g %% 40 ELSE NULL END,
       CASE WHEN g %% 10 = 0 THEN 'user' || (g %% 40) || '@bench.test' ELSE '' END,
       g %% 25, 'agent-' || (g %% 25), g %% 40, 'user' || (g %% 40) || '@bench.test',
       'catalog.tool', (g %% 60)::text, 'tool ' || (g %% 60),
       'server' || (g %% 6), 'tool_' || (g %% 60),
       CASE WHEN g %% 50 = 0 THEN 'deny' ELSE 'allow' END,
       CASE WHEN g %% 23 = 0 THEN 'timeout' WHEN g %% 50 = 0 THEN 'policy' ELSE '' END,
       (g %% 500)::float, (g %% 400)::float,
       jsonb_build_object('arguments', jsonb_build_object('n', g), 'matched_rules', '[]'::jsonb),
       md5(g::text), '10.0.0.1'
FROM generate_series(1, %(n)s) AS g
"""


def fill(rows: int) -> None:
    org = _org()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM audit_auditevent")
        have = cursor.fetchone()[0]
        need = rows - have
        start = time.perf_counter()
        if need > 0:
            cursor.execute(FILL_SQL, {"org": org.id, "n": need})
        cursor.execute("ANALYZE audit_auditevent")
    print(f"filled to {rows:,} rows in {time.perf_counter() - start:.1f}s (set-based SQL)")


def bench_page() -> None:
    from audit.filters import AuditQuery
    from audit.selectors import audit_events_page

    org = _org()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT min(id), max(id) FROM audit_auditevent WHERE organization_id=%s", [org.id]
        )
        low, high = cursor.fetchone()
    middle = (low + high) // 2
    cases = {
        "no filter": AuditQuery(),
        "action=member.invited": AuditQuery(action="member.invited"),
        "agent=agent-7": AuditQuery(agent="agent-7"),
        "server+tool": AuditQuery(server="server3", tool="tool_33"),
        "decision=deny": AuditQuery(decision="deny"),
        "on_behalf_of": AuditQuery(on_behalf_of="user5@bench.test"),
        "search q=user17": AuditQuery(q="user17"),
    }
    for name, query in cases.items():
        for label, before in (("first page", None), ("deep page", middle)):
            timings = []
            for _ in range(3):
                start = time.perf_counter()
                page = audit_events_page(org=org, query=query, before=before)
                timings.append(time.perf_counter() - start)
            qs = query.apply(
                __import__("audit.models", fromlist=["AuditEvent"]).AuditEvent.objects.for_org(org)
            ).order_by("-id")
            if before:
                qs = qs.filter(id__lt=before)
            plan = qs[:51].explain()
            index = next(
                (word for word in plan.replace("(", " ").split() if word.startswith("audit_")), "-"
            )
            uses = "index " + index if "Index" in plan else "SEQ SCAN"
            print(
                f"page {name:<24} {label:<10} best {min(timings) * 1000:7.1f} ms  "
                f"rows {len(page.events):>3}  plan: {uses}"
            )


def bench_export_child(fmt: str) -> None:
    """Runs in a child process: stream the whole org's export to /dev/null."""
    from audit.export import audit_export_start, export_chunks
    from audit.filters import AuditQuery

    org = _org()
    query = AuditQuery()
    rss_before = _vm("VmRSS")
    start = time.perf_counter()
    export = audit_export_start(org=org, actor=None, fmt=fmt, query=query)
    size = 0
    with open(os.devnull, "wb") as sink:
        for chunk in export_chunks(export, query):
            size += len(chunk)
            sink.write(chunk)
    elapsed = time.perf_counter() - start
    export.refresh_from_db()
    print(
        f"export {fmt:<5}: {export.event_count:,} rows, {size / 1e6:,.0f} MB in {elapsed:.1f}s "
        f"({export.event_count / elapsed:,.0f} rows/s); peak RSS {_vm('VmHWM'):.0f} MB "
        f"(RSS before the export {rss_before:.0f} MB)"
    )


def bench_seal(rows: int) -> None:
    from django.conf import settings

    from audit.sealing import seal_chain

    settings.AUDIT_SEAL_LAG_SECONDS = 0  # the bench rows are seconds old

    org = _org()
    start = time.perf_counter()
    sealed = 0
    while sealed < rows:
        done = seal_chain(org_id=org.id, max_batches=1)
        if not done:
            break
        sealed += done
    elapsed = time.perf_counter() - start
    print(f"sealing: {sealed:,} rows in {elapsed:.1f}s ({sealed / elapsed:,.0f} rows/s)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--record-rows", type=int, default=5000)
    parser.add_argument("--seal-rows", type=int, default=100_000)
    parser.add_argument("--export-child", choices=["csv", "jsonl"])
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("Run this against PostgreSQL (DATABASE_URL=postgres://...).")
    if args.export_child:
        bench_export_child(args.export_child)
        return
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        # TRUNCATE is not a row DELETE: the append-only trigger does not fire (bench database only).
        cursor.execute(
            "TRUNCATE audit_auditevent, audit_auditseal, audit_auditexport, "
            "audit_toolcallrollup, audit_principalrollup, audit_rollupcursor"
        )
    print(f"PostgreSQL, {os.cpu_count()} CPUs (shared)")
    bench_record(args.record_rows)
    bench_record(args.record_rows, per_transaction=100)
    fill(args.rows)
    bench_page()
    for fmt in ("jsonl", "csv"):
        subprocess.run([sys.executable, __file__, "--export-child", fmt], check=True)
    bench_seal(args.seal_rows)


if __name__ == "__main__":
    main()
