"""Benchmark of the policy editor's validate-as-you-type (not a test).

    createdb -h 127.0.0.1 -U postgres gw_policy_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gw_policy_bench \\
        .venv/bin/python bench/bench_policy_editor.py

Builds the organization of `bench/bench_engine.py` in the database (100 approved servers x 20
tools, 50 tool groups, 100 policies, 300 agents, 20 teams; it migrates and replaces the
organization `bench-policies`: never point it at real data), then times what one keystroke
costs the server: `services.policy_check` for one policy's YAML (what the editor posts), with
the steps behind it, and the whole request through the test client.
"""

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench.bench_engine import AGENTS, build_policies, build_snapshot  # noqa: E402

SLUG = "bench-policies"


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1000:.1f} ms (min {min(samples) * 1000:.1f})"


def build_org():  # type: ignore[no-untyped-def]
    from catalog.models import Server, ServerStatus, ServerVersion, Tool, VersionStatus
    from policies.document import export_document
    from policies.services import policy_apply
    from policies.types import PolicyDocument, ToolGroupSpec
    from tenants.models import Agent, Membership, Organization, Team, User

    Organization.objects.filter(slug=SLUG).delete()
    rng = random.Random(42)
    snapshot = build_snapshot(rng)
    policies = build_policies(rng)
    with transaction.atomic():
        org = Organization.objects.create(slug=SLUG, name="Bench policies")
        user, _ = User.objects.get_or_create(email="bench-admin@example.test")
        user.set_password("bench-password")
        user.save()
        Membership.objects.create(organization=org, user=user, role="owner")
        teams = [Team(organization=org, name=f"team {t}", slug=f"team-{t}") for t in range(20)]
        Team.objects.bulk_create(teams)
        Agent.objects.bulk_create(
            Agent(organization=org, name=f"agent {a}", slug=f"agent-{a}") for a in range(AGENTS)
        )
        by_server: dict[str, list] = {}
        for tool in snapshot.tools:
            by_server.setdefault(tool.server, []).append(tool)
        for slug, tools in by_server.items():
            server = Server.objects.create(
                organization=org,
                name=slug,
                slug=slug,
                url=f"https://{slug}.example.test/mcp",
                status=ServerStatus.APPROVED,
            )
            version = ServerVersion.objects.create(
                organization=org,
                server=server,
                number=1,
                status=VersionStatus.APPROVED,
                reviewed_at=timezone.now(),
                config_snapshot=server.connection_snapshot(),
            )
            Tool.objects.bulk_create(
                Tool(
                    organization=org,
                    version=version,
                    server=server,
                    name=t.name,
                    title=t.title,
                    description=t.description,
                    input_schema=dict(t.input_schema),
                    annotations=dict(t.annotations),
                    definition_hash=t.definition_hash,
                    quarantined=not t.callable,
                )
                for t in tools
            )
            server.approved_version = version
            server.save(update_fields=["approved_version"])
    document = PolicyDocument(
        tool_groups=tuple(ToolGroupSpec(slug=k, tools=v) for k, v in snapshot.tool_groups.items()),
        policies=tuple(policies),
    )
    result = policy_apply(org=org, actor=None, text=export_document(document), dry_run=False)
    if result.errors:
        raise SystemExit(f"the bench document does not apply: {result.errors[:3]}")
    return org, user


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15)
    options = parser.parse_args()
    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    org, user = build_org()
    print(f"setup: {time.perf_counter() - started:.1f} s")

    from django.test import Client
    from django.urls import reverse

    from policies import services
    from policies.document import diff_documents, parse_document, validate_document
    from policies.engine import compile
    from policies.models import Policy
    from policies.snapshot import build_snapshot as db_snapshot
    from policies.specs import policy_spec, policy_yaml

    row = Policy.objects.get(organization=org, name="policy-42")
    text = policy_yaml(row)
    edited = text.replace("rateLimitPerMinute: 120", "rateLimitPerMinute: 60")
    broken = text.replace("post_item7", "post_itme7", 1)
    assert edited != text and broken != text

    check = timed(lambda: services.policy_check(org=org, text=edited, policy=row), options.repeat)
    check_broken = timed(
        lambda: services.policy_check(org=org, text=broken, policy=row), options.repeat
    )
    print(f"policy_check (one keystroke, valid edit):   {ms(check)}")
    print(f"policy_check (one keystroke, typo):         {ms(check_broken)}")

    snapshot = db_snapshot(org)
    rows = list(Policy.objects.for_org(org))
    specs = [policy_spec(p) for p in rows]
    doc = parse_document(edited)
    print(f"  build_snapshot (DB, 2,000 tools):         {ms(timed(lambda: db_snapshot(org), 5))}")
    print(
        "  read 100 policy rows:                     "
        f"{ms(timed(lambda: [policy_spec(p) for p in Policy.objects.for_org(org)], 5))}"
    )
    print(
        f"  parse one policy:                         {ms(timed(lambda: parse_document(edited), 5))}"
    )
    print(
        "  validate one policy against the catalog:  "
        f"{ms(timed(lambda: validate_document(doc, snapshot), 5))}"
    )
    print(
        "  strict compile of the 100 policies:       "
        f"{ms(timed(lambda: compile(snapshot, specs, 0, strict=True), 5))}"
    )
    live = parse_document(text)
    print(
        f"  diff:                                     {ms(timed(lambda: diff_documents(live, doc), 5))}"
    )

    client = Client()
    client.force_login(user)
    url = reverse("policies:validate", args=(org.slug, row.pk))
    request = timed(lambda: client.post(url, {"text": edited}), options.repeat)
    print(f"POST .../validate/ (whole request):         {ms(request)}")


if __name__ == "__main__":
    main()
