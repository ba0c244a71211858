"""Metrics built from the audit trail: hourly rollups of `tool.call` rows, the per-org dashboard
(charts drawn server-side as SVG) and `/metrics` for Prometheus.

The trail is the single source: the gateway writes one `tool.call` row per call (before it
answers), the rollup task folds new rows into per (org, server, tool, hour) counters and a fixed
latency histogram, and percentiles are read from the histogram (linear within a bucket).
"""

import hmac
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from audit.models import AuditEvent, PrincipalRollup, RollupCursor, ToolCallRollup

# Upper bounds (ms) of the latency buckets; one more bucket counts everything above the last.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    30000,
)
WINDOWS = ("24", "168", "720")  # hours offered on the dashboard: a day, a week, 30 days
RATE_LIMIT_CLASS = "rate_limit"
CURSOR_NAME = "tool_calls"
_ROW_FIELDS = (
    "id",
    "organization_id",
    "occurred_at",
    "action",
    "outcome",
    "server",
    "tool",
    "decision",
    "error_class",
    "latency_ms",
    "agent_id",
    "agent_label",
    "on_behalf_of_id",
    "on_behalf_of_label",
)


def bucket_index(latency_ms: float) -> int:
    for index, bound in enumerate(LATENCY_BUCKETS_MS):
        if latency_ms <= bound:
            return index
    return len(LATENCY_BUCKETS_MS)


def percentile(buckets: list[int], fraction: float) -> float | None:
    """The latency below which `fraction` of calls fall, interpolated inside its bucket."""
    total = sum(buckets)
    if total == 0:
        return None
    target = fraction * total
    seen = 0
    for index, count in enumerate(buckets):
        if count and seen + count >= target:
            low = LATENCY_BUCKETS_MS[index - 1] if index > 0 else 0.0
            high = (
                LATENCY_BUCKETS_MS[index]
                if index < len(LATENCY_BUCKETS_MS)
                else LATENCY_BUCKETS_MS[-1] * 2
            )
            return low + (high - low) * ((target - seen) / count)
        seen += count
    return float(LATENCY_BUCKETS_MS[-1])


def _hour(value: datetime) -> datetime:
    return value.replace(minute=0, second=0, microsecond=0)


def _is_denied(row: dict[str, Any]) -> bool:
    return row["decision"] == "deny" or row["outcome"] == "denied"


# --- Rollup building ----------------------------------------------------------------------------


def rollup_build(*, max_batches: int = 10) -> int:
    """Fold new `tool.call` rows into the rollups, in bounded batches. One worker at a time holds
    the cursor row (others skip); counters and the cursor commit together, so a retry never
    counts a row twice. Rows younger than the seal lag wait, so late commits are not skipped."""
    RollupCursor.objects.get_or_create(name=CURSOR_NAME)
    horizon = timezone.now() - timedelta(seconds=settings.AUDIT_SEAL_LAG_SECONDS)
    folded = 0
    for _ in range(max_batches):
        with transaction.atomic():
            cursor = (
                RollupCursor.objects.select_for_update(skip_locked=True)
                .filter(name=CURSOR_NAME)
                .first()
            )
            if cursor is None:
                return folded  # another worker is rolling up
            rows = list(
                AuditEvent.objects.filter(id__gt=cursor.last_event_id)
                .order_by("id")
                .values(*_ROW_FIELDS)[: settings.AUDIT_ROLLUP_BATCH_SIZE]
            )
            for index, row in enumerate(rows):
                if row["occurred_at"] > horizon:
                    rows = rows[:index]
                    break
            if not rows:
                return folded
            calls = [r for r in rows if r["action"] == "tool.call" and r["organization_id"]]
            _fold_tools(calls)
            _fold_principals(calls)
            cursor.last_event_id = rows[-1]["id"]
            cursor.updated_at = timezone.now()
            cursor.save(update_fields=["last_event_id", "updated_at"])
            folded += len(calls)
        if len(rows) < settings.AUDIT_ROLLUP_BATCH_SIZE:
            break
    return folded


def _fold_tools(calls: list[dict[str, Any]]) -> None:
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in calls:
        key = (row["organization_id"], _hour(row["occurred_at"]), row["server"], row["tool"])
        groups[key].append(row)
    if not groups:
        return
    lookup = Q()
    for org_id, hour, server, tool in groups:
        lookup |= Q(organization_id=org_id, hour=hour, server=server, tool=tool)
    existing = {
        (r.organization_id, r.hour, r.server, r.tool): r
        for r in ToolCallRollup.objects.select_for_update().filter(lookup)
    }
    to_create, to_update = [], []
    for key, rows in groups.items():
        rollup = existing.get(key)
        if rollup is None:
            rollup = ToolCallRollup(
                organization_id=key[0],
                hour=key[1],
                server=key[2],
                tool=key[3],
                errors_by_class={},
                latency_buckets=[0] * (len(LATENCY_BUCKETS_MS) + 1),
            )
            to_create.append(rollup)
        else:
            to_update.append(rollup)
        buckets = list(rollup.latency_buckets) or [0] * (len(LATENCY_BUCKETS_MS) + 1)
        errors = dict(rollup.errors_by_class)
        for row in rows:
            rollup.calls += 1
            if _is_denied(row):
                rollup.denied += 1
            elif row["outcome"] == "success":
                rollup.successes += 1
            else:
                rollup.failures += 1
            if row["error_class"]:
                errors[row["error_class"]] = errors.get(row["error_class"], 0) + 1
            if row["latency_ms"] is not None:
                rollup.latency_sum_ms += row["latency_ms"]
                rollup.latency_count += 1
                buckets[bucket_index(row["latency_ms"])] += 1
        rollup.latency_buckets = buckets
        rollup.errors_by_class = errors
    ToolCallRollup.objects.bulk_create(to_create)
    ToolCallRollup.objects.bulk_update(
        to_update,
        [
            "calls",
            "successes",
            "failures",
            "denied",
            "errors_by_class",
            "latency_sum_ms",
            "latency_count",
            "latency_buckets",
        ],
    )


def _fold_principals(calls: list[dict[str, Any]]) -> None:
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in calls:
        key = (
            row["organization_id"],
            _hour(row["occurred_at"]),
            row["agent_id"],
            row["agent_label"],
            row["on_behalf_of_id"],
            row["on_behalf_of_label"],
        )
        groups[key].append(row)
    if not groups:
        return
    lookup = Q()
    for org_id, hour, *_ in groups:
        lookup |= Q(organization_id=org_id, hour=hour)
    existing = {
        (
            r.organization_id,
            r.hour,
            r.agent_id,
            r.agent_label,
            r.on_behalf_of_id,
            r.on_behalf_of_label,
        ): r
        for r in PrincipalRollup.objects.select_for_update().filter(lookup)
    }
    to_create, to_update = [], []
    for key, rows in groups.items():
        rollup = existing.get(key)
        if rollup is None:
            rollup = PrincipalRollup(
                organization_id=key[0],
                hour=key[1],
                agent_id=key[2],
                agent_label=key[3],
                on_behalf_of_id=key[4],
                on_behalf_of_label=key[5],
            )
            to_create.append(rollup)
        else:
            to_update.append(rollup)
        for row in rows:
            rollup.calls += 1
            if _is_denied(row):
                rollup.denied += 1
            elif row["outcome"] != "success":
                rollup.failures += 1
            if row["error_class"] == RATE_LIMIT_CLASS:
                rollup.rate_limited += 1
    PrincipalRollup.objects.bulk_create(to_create)
    PrincipalRollup.objects.bulk_update(to_update, ["calls", "failures", "denied", "rate_limited"])


# --- Dashboard ----------------------------------------------------------------------------------


def _merge(into: dict[str, Any], rollup: ToolCallRollup) -> None:
    into["calls"] += rollup.calls
    into["successes"] += rollup.successes
    into["failures"] += rollup.failures
    into["denied"] += rollup.denied
    into["latency_sum_ms"] += rollup.latency_sum_ms
    into["latency_count"] += rollup.latency_count
    buckets = into["buckets"]
    for index, count in enumerate(rollup.latency_buckets):
        if index < len(buckets):
            buckets[index] += count
    for name, count in rollup.errors_by_class.items():
        into["errors"][name] = into["errors"].get(name, 0) + count


def _empty() -> dict[str, Any]:
    return {
        "calls": 0,
        "successes": 0,
        "failures": 0,
        "denied": 0,
        "latency_sum_ms": 0.0,
        "latency_count": 0,
        "buckets": [0] * (len(LATENCY_BUCKETS_MS) + 1),
        "errors": {},
    }


def _summarize(stats: dict[str, Any]) -> dict[str, Any]:
    calls = stats["calls"]
    stats["success_rate"] = stats["successes"] / calls if calls else None
    stats["avg_ms"] = (
        stats["latency_sum_ms"] / stats["latency_count"] if stats["latency_count"] else None
    )
    stats["p50_ms"] = percentile(stats["buckets"], 0.50)
    stats["p95_ms"] = percentile(stats["buckets"], 0.95)
    stats["p99_ms"] = percentile(stats["buckets"], 0.99)
    stats["error_list"] = sorted(stats["errors"].items(), key=lambda kv: -kv[1])
    return stats


def dashboard(*, org: Any, hours: int) -> dict[str, Any]:
    """Everything the metrics page shows for the last `hours` hours."""
    now = timezone.now()
    since = _hour(now) - timedelta(hours=hours - 1)
    hour_axis = [since + timedelta(hours=i) for i in range(hours)]
    rollups = list(ToolCallRollup.objects.for_org(org).filter(hour__gte=since).order_by("hour"))
    per_tool: dict[tuple[str, str], dict[str, Any]] = defaultdict(_empty)
    per_tool_hour: dict[tuple[str, str], dict[datetime, dict[str, Any]]] = defaultdict(dict)
    total = _empty()
    for rollup in rollups:
        key = (rollup.server, rollup.tool)
        _merge(per_tool[key], rollup)
        _merge(total, rollup)
        hour_stats = per_tool_hour[key].setdefault(rollup.hour, _empty())
        _merge(hour_stats, rollup)
    tools = [
        {"server": server, "tool": tool, **_summarize(stats)}
        for (server, tool), stats in per_tool.items()
    ]
    tools.sort(key=lambda t: -t["calls"])
    charted = tools[:6]
    success_series, latency_series = [], []
    for tool in charted:
        by_hour = per_tool_hour[(tool["server"], tool["tool"])]
        label = f"{tool['server']}.{tool['tool']}"
        s_points, l_points = [], []
        for index, hour in enumerate(hour_axis):
            stats = by_hour.get(hour)
            if stats and stats["calls"]:
                s_points.append((index, 100.0 * stats["successes"] / stats["calls"]))
                p95 = percentile(stats["buckets"], 0.95)
                if p95 is not None:
                    l_points.append((index, p95))
        success_series.append((label, s_points))
        latency_series.append((label, l_points))

    principals = PrincipalRollup.objects.for_org(org).filter(hour__gte=since)
    agents = list(
        principals.exclude(agent_label="")
        .values("agent_label")
        .annotate(
            calls=Sum("calls"),
            denied=Sum("denied"),
            failures=Sum("failures"),
            rate_limited=Sum("rate_limited"),
        )
        .order_by("-calls")[:50]
    )
    by_user = {
        row["on_behalf_of_id"]: row["calls"]
        for row in principals.exclude(on_behalf_of_id=None)
        .values("on_behalf_of_id")
        .annotate(calls=Sum("calls"))
    }
    return {
        "total": _summarize(total),
        "tools": tools,
        "failing": sorted((t for t in tools if t["failures"]), key=lambda t: -t["failures"])[:10],
        "denied_tools": sorted((t for t in tools if t["denied"]), key=lambda t: -t["denied"])[:10],
        "busiest_agents": agents[:10],
        "rate_limited_agents": sorted(
            (a for a in agents if a["rate_limited"]), key=lambda a: -a["rate_limited"]
        )[:10],
        "busiest_teams": _team_calls(org=org, calls_by_user=by_user)[:10],
        "success_chart": line_chart(
            success_series, hour_axis, y_max=100.0, unit="%", title="Success rate per hour"
        ),
        "latency_chart": line_chart(
            latency_series, hour_axis, y_max=None, unit=" ms", title="p95 latency per hour"
        ),
        "since": since,
    }


def _team_calls(*, org: Any, calls_by_user: dict[int, int]) -> list[dict[str, Any]]:
    """Cost attribution: a team's calls are those made for its members (a user in two teams
    counts for both)."""
    from tenants.models import Team

    if not calls_by_user:
        return []
    out = []
    for team in Team.objects.for_org(org).prefetch_related("members")[:200]:
        calls = sum(calls_by_user.get(member.pk, 0) for member in team.members.all())
        if calls:
            out.append({"team": team.name, "calls": calls})
    return sorted(out, key=lambda t: -t["calls"])


_PALETTE = ("#2d5bd7", "#1f8a4c", "#c0392b", "#b7791f", "#7b3fbf", "#138496")


def line_chart(
    series: Iterable[tuple[str, list[tuple[int, float]]]],
    hour_axis: list[datetime],
    *,
    y_max: float | None,
    unit: str,
    title: str,
) -> SafeString:
    """A small accessible SVG line chart; every label is escaped."""
    series = [(label, points) for label, points in series if points]
    width, height, left, bottom, top, right = 640, 220, 48, 24, 12, 8
    plot_w, plot_h = width - left - right, height - top - bottom
    if not series:
        return mark_safe('<p class="muted">No tool calls in this window yet.</p>')
    peak = y_max or max(y for _, points in series for _, y in points) or 1.0
    n = max(len(hour_axis) - 1, 1)

    def x(i: int) -> float:
        return left + plot_w * i / n

    def y(v: float) -> float:
        return top + plot_h * (1 - min(v, peak) / peak)

    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for frac in (0, 0.5, 1):
        gy = top + plot_h * (1 - frac)
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="#e3e6ec"/>'
            f'<text x="{left - 4}" y="{gy + 4:.1f}" font-size="10" text-anchor="end" '
            f'fill="#667085">{peak * frac:.0f}{escape(unit)}</text>'
        )
    parts.append(
        f'<text x="{left}" y="{height - 6}" font-size="10" fill="#667085">'
        f"{hour_axis[0]:%m-%d %H:00}</text>"
        f'<text x="{width - right}" y="{height - 6}" font-size="10" text-anchor="end" '
        f'fill="#667085">{hour_axis[-1]:%m-%d %H:00} UTC</text>'
    )
    for index, (label, points) in enumerate(series):
        color = _PALETTE[index % len(_PALETTE)]
        coords = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in points)
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}">'
            f"<title>{escape(label)}</title></polyline>"
        )
        for i, v in points:
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="{color}">'
                f"<title>{escape(label)}: {v:.1f}{escape(unit)} at {hour_axis[i]:%m-%d %H:00}</title>"
                "</circle>"
            )
    parts.append("</svg>")
    legend = "".join(
        f'<span class="legend-item"><span class="swatch" style="background:'
        f'{_PALETTE[i % len(_PALETTE)]}"></span>{escape(label)}</span>'
        for i, (label, _) in enumerate(series)
    )
    return mark_safe("".join(parts) + f'<div class="legend">{legend}</div>')  # noqa: S308 - escaped above


# --- Prometheus -----------------------------------------------------------------------------------


class _RollupCollector:
    """Series come from the rollups, capped at METRICS_MAX_SERIES (org, server, tool) triples by
    call volume; the rest are summed into server="other", tool="other", so label cardinality stays
    bounded however many tools exist."""

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from tenants.models import Organization

        limit = settings.METRICS_MAX_SERIES
        rows = list(
            ToolCallRollup.objects.values("organization_id", "server", "tool")
            .annotate(
                calls=Sum("calls"),
                successes=Sum("successes"),
                failures=Sum("failures"),
                denied=Sum("denied"),
            )
            .order_by("-calls")[: limit + 1000]
        )
        slugs = dict(
            Organization.objects.filter(id__in={r["organization_id"] for r in rows}).values_list(
                "id", "slug"
            )
        )
        calls = CounterMetricFamily(
            "mcpgw_tool_calls",
            "Tool calls through the gateway, from the audit trail.",
            labels=["org", "server", "tool", "result"],
        )
        folded: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for index, row in enumerate(rows):
            org = slugs.get(row["organization_id"], "unknown")
            if index < limit:
                for result in ("successes", "failures", "denied"):
                    calls.add_metric([org, row["server"], row["tool"], result], row[result])
            else:
                for result in ("successes", "failures", "denied"):
                    folded[org][result] += row[result]
        for org, counts in list(folded.items())[:limit]:
            for result, value in counts.items():
                calls.add_metric([org, "other", "other", result], value)
        yield calls

        since = _hour(timezone.now()) - timedelta(hours=1)
        recent: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(_empty)
        for rollup in ToolCallRollup.objects.filter(hour__gte=since).order_by("-calls")[:limit]:
            org = slugs.get(rollup.organization_id) or str(rollup.organization_id)
            _merge(recent[(org, rollup.server, rollup.tool)], rollup)
        p95 = GaugeMetricFamily(
            "mcpgw_tool_call_latency_p95_ms",
            "p95 latency of tool calls over the current and previous hour (ms).",
            labels=["org", "server", "tool"],
        )
        for (org, server, tool), stats in recent.items():
            value = percentile(stats["buckets"], 0.95)
            if value is not None:
                p95.add_metric([org, server, tool], value)
        yield p95

        cursor = RollupCursor.objects.filter(name=CURSOR_NAME).first()
        lag = GaugeMetricFamily(
            "mcpgw_audit_rollup_last_event_id", "The last audit row folded into the rollups."
        )
        lag.add_metric([], cursor.last_event_id if cursor else 0)
        yield lag


def prometheus_response(request: HttpRequest) -> HttpResponse:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    token = settings.METRICS_TOKEN
    if not token:
        raise Http404("Metrics are not enabled.")
    header = request.headers.get("Authorization", "")
    supplied = header[7:] if header.startswith("Bearer ") else ""
    if not supplied or not hmac.compare_digest(supplied.encode(), token.encode()):
        response = HttpResponse("A valid bearer token is required.\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_RollupCollector())  # type: ignore[arg-type]
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
