"""Metrics from the trail: rollups, percentiles, the dashboard page and /metrics."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.metrics import percentile, rollup_build
from audit.models import ToolCallRollup
from tests.audit.factories import AuditEventFactory, ToolCallEventFactory
from tests.factories import TeamFactory

pytestmark = pytest.mark.django_db


def _calls(org, user=None):
    at = timezone.now() - timedelta(minutes=30)
    for i in range(18):
        ToolCallEventFactory(
            organization=org,
            occurred_at=at,
            latency_ms=20.0 + i,
            on_behalf_of_id=getattr(user, "pk", None),
        )
    ToolCallEventFactory(
        organization=org,
        occurred_at=at,
        outcome="failure",
        error_class="timeout",
        latency_ms=4000.0,
    )
    ToolCallEventFactory(
        organization=org,
        occurred_at=at,
        tool="delete_ticket",
        decision="deny",
        outcome="denied",
        error_class="policy",
    )
    ToolCallEventFactory(
        organization=org,
        occurred_at=at,
        outcome="failure",
        error_class="rate_limit",
        latency_ms=1.0,
    )
    AuditEventFactory(organization=org, occurred_at=at)  # not a tool call


def test_rollup_counts_and_percentiles(org_a) -> None:
    _calls(org_a)
    assert rollup_build() == 21
    rollup = ToolCallRollup.objects.get(organization=org_a, tool="list_tickets")
    assert (rollup.calls, rollup.successes, rollup.failures) == (20, 18, 2)
    assert rollup.errors_by_class == {"timeout": 1, "rate_limit": 1}
    assert 25 <= percentile(rollup.latency_buckets, 0.5) <= 50
    assert percentile(rollup.latency_buckets, 0.99) > 2500
    assert rollup_build() == 0  # nothing counted twice


def test_rollup_waits_for_recent_rows(org_a) -> None:
    ToolCallEventFactory(organization=org_a)  # just now
    assert rollup_build() == 0
    assert not ToolCallRollup.objects.exists()


def test_dashboard_shows_per_tool_success_and_latency(
    org_a, alice, member_with_role, client_as
) -> None:
    team = TeamFactory(organization=org_a, name="Support")
    team.members.add(alice)
    _calls(org_a, user=alice)
    rollup_build()
    response = client_as(member_with_role("auditor")).get(f"/o/{org_a.slug}/audit/metrics/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "tickets.list_tickets" in body and "<svg" in body
    assert "90%" in body  # 18 of 20 list_tickets calls succeeded
    tools = {t["tool"]: t for t in response.context["tools"]}
    assert tools["list_tickets"]["p95_ms"] is not None
    assert [t["tool"] for t in response.context["denied_tools"]] == ["delete_ticket"]
    assert response.context["rate_limited_agents"][0]["rate_limited"] == 1
    assert response.context["busiest_teams"] == [{"team": "Support", "calls": 18}]


def test_dashboard_rejects_odd_windows(org_a, alice, client_as) -> None:
    response = client_as(alice).get(f"/o/{org_a.slug}/audit/metrics/", {"hours": "999999"})
    assert response.status_code == 200 and response.context["hours"] == "24"


def test_prometheus_endpoint_needs_a_configured_token(client, settings, org_a) -> None:
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    _calls(org_a)
    rollup_build()
    response = client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-token"})
    assert response.status_code == 200
    text = response.content.decode()
    assert (
        'mcpgw_tool_calls_total{org="acme",result="successes",server="tickets",tool="list_tickets"} 18.0'
        in text
    )
    assert "mcpgw_tool_call_latency_p95_ms" in text


def test_prometheus_label_cardinality_is_bounded(client, settings, org_a) -> None:
    settings.METRICS_TOKEN = "t0ken-for-metrics"
    settings.METRICS_MAX_SERIES = 3
    hour = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    for i in range(10):
        ToolCallRollup.objects.create(
            organization=org_a,
            hour=hour,
            server="s",
            tool=f"tool{i}",
            calls=i + 1,
            successes=i + 1,
            latency_buckets=[0] * 13,
        )
    text = client.get(
        "/metrics", headers={"Authorization": "Bearer t0ken-for-metrics"}
    ).content.decode()
    series = [
        line
        for line in text.splitlines()
        if line.startswith("mcpgw_tool_calls_total{") and "successes" in line
    ]
    assert len(series) == 4  # 3 busiest tools + one "other"
    assert any('tool="other"' in line and line.endswith(" 28.0") for line in series)
