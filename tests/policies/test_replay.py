"""Explain and replay, against real `tool.call` audit rows written with audit.record."""

from datetime import timedelta

import pytest
from django.utils import timezone

import audit
from policies import services
from policies.replay import policy_explain, policy_replay
from tests.factories import AgentFactory
from tests.policies.factories import approved_server

LIVE = """\
name: triage
consumer: triage-bot
allow:
  servers: [tickets]
  tools: [chat.post_message]
deny:
  tools: [tickets.delete_ticket]
"""

# Proposed: stop posting to chat, and allow deleting tickets.
PROPOSED = """\
name: triage
consumer: triage-bot
allow:
  servers: [tickets]
"""


@pytest.fixture
def setup(org_a, alice, bob):
    approved_server(org_a, "tickets")
    approved_server(org_a, "chat")
    bot = AgentFactory(organization=org_a, slug="triage-bot", acting_for=bob)
    other = AgentFactory(organization=org_a, slug="reporter")
    assert services.policy_apply(org=org_a, actor=alice, text=LIVE, dry_run=False).applied
    return org_a, bot, other


def call(
    org,
    agent,
    server,
    tool,
    decision,
    arguments=None,
    *,
    ago=timedelta(hours=1),
    extra_exposed=None,
    **extra,
):
    """A `tool.call` row as the gateway writes it (real tool in the columns, exposed name and
    arguments in details)."""
    event = audit.record(
        org=org,
        action="tool.call",
        agent=agent,
        on_behalf_of=agent.acting_for,
        server=server,
        tool=tool,
        decision=decision,
        details={
            "exposed_tool": extra_exposed or f"{server}.{tool}",
            "arguments": arguments or {},
        },
        # Audit rows are append-only (a Postgres trigger refuses UPDATE): set the time now.
        occurred_at=timezone.now() - ago,
        **extra,
    )
    return event


def test_explain_allowed_call_names_the_rule(setup):
    org, bot, _ = setup
    explanation = policy_explain(org=org, agent=bot, tool="tickets.get_ticket", arguments={})
    assert explanation.allowed
    assert explanation.verdict.startswith("Allowed: agent 'triage-bot'")
    assert any("triage" in reason for reason in explanation.reasons)


def test_explain_denied_call_says_the_deny_wins(setup):
    org, bot, _ = setup
    explanation = policy_explain(org=org, agent=bot, tool="tickets.delete_ticket")
    assert not explanation.allowed
    assert (
        explanation.verdict
        == "Denied: agent 'triage-bot' acting for bob@acme.test may not call tickets.delete_ticket."
    )
    assert any("deny" in reason for reason in explanation.reasons), explanation.reasons


def test_explain_against_a_proposal_does_not_change_the_live_policy(setup):
    org, bot, _ = setup
    proposed = policy_explain(
        org=org, agent=bot, tool="chat.post_message", arguments={}, proposed_text=PROPOSED
    )
    assert not proposed.allowed
    assert policy_explain(org=org, agent=bot, tool="chat.post_message").allowed


def test_explain_reports_errors_of_a_broken_proposal(setup):
    org, bot, _ = setup
    explanation = policy_explain(
        org=org, agent=bot, tool="chat.post_message", proposed_text="consumer: [oops"
    )
    assert not explanation.allowed and explanation.errors


def test_replay_lists_flips_both_ways_with_counts(setup):
    org, bot, other = setup
    call(org, bot, "chat", "post_message", "allow", {"channel": "triage", "text": "hi"})
    call(org, bot, "chat", "post_message", "allow", {"channel": "triage", "text": "again"})
    call(org, bot, "tickets", "get_ticket", "allow", {"ticket_id": "T-1"})  # unchanged
    call(org, bot, "tickets", "delete_ticket", "deny", {"ticket_id": "T-1"})  # -> allowed
    call(org, other, "tickets", "get_ticket", "deny")  # reporter: denied before and after
    call(org, bot, "chat", "post_message", "allow", ago=timedelta(days=30))  # out of period

    result = policy_replay(org=org, text=PROPOSED, since=timezone.now() - timedelta(days=1))
    assert result.errors == []
    assert result.scanned == 5 and not result.truncated
    assert (result.to_denied, result.to_allowed) == (2, 1)
    assert result.counts == [
        {
            "agent": "triage-bot",
            "tool": "chat.post_message",
            "direction": "allowed → denied",
            "calls": 2,
        },
        {
            "agent": "triage-bot",
            "tool": "tickets.delete_ticket",
            "direction": "denied → allowed",
            "calls": 1,
        },
    ]
    flip = next(f for f in result.flips if f.tool == "tickets.delete_ticket")
    assert not flip.was_allowed and flip.now_allowed


def test_replay_is_bounded_and_says_so(setup):
    org, bot, _ = setup
    for _ in range(5):
        call(org, bot, "chat", "post_message", "allow")
    result = policy_replay(org=org, text=PROPOSED, max_rows=3)
    assert result.scanned == 3 and result.truncated
    assert result.to_denied == 3


def test_replay_counts_rate_limited_calls_as_allowed_by_policy(setup):
    org, bot, _ = setup
    call(org, bot, "chat", "post_message", "deny", error_class="rate_limit")
    result = policy_replay(org=org, text=PROPOSED)
    assert result.to_denied == 1


def test_replay_skips_calls_of_deleted_agents(setup):
    org, _bot, other = setup
    call(org, other, "tickets", "get_ticket", "deny")
    other.delete()
    result = policy_replay(org=org, text=PROPOSED)
    assert result.skipped == 1 and result.changed == 0


def test_replay_writes_nothing_and_reports_bad_documents(setup, row_counts):
    org, bot, _ = setup
    call(org, bot, "chat", "post_message", "allow")
    before = row_counts()
    result = policy_replay(org=org, text="consumer: triage-bot\nallow:\n  tools: [nope.x]\n")
    assert result.errors and result.scanned == 0
    assert policy_replay(org=org, text=PROPOSED).changed == 1
    assert row_counts() == before


def test_replay_never_reads_another_organizations_calls(setup, org_b):
    org, _bot, _ = setup
    stranger = AgentFactory(organization=org_b, slug="triage-bot")
    call(org_b, stranger, "chat", "post_message", "allow")
    assert policy_replay(org=org, text=PROPOSED).scanned == 0


# --------------------------------------------------------------------------- the demo, end to end


def test_demo_policy_applies_explains_round_trips_and_replays(db, settings):
    """The issue's "done when", on the real demo catalog: the seed applies, explains
    correctly, round-trips, and a replay lists the calls a change would flip."""
    import importlib

    from demo.seed import DemoContext
    from policies.services import policy_apply, policy_export

    settings.DEMO_UPSTREAM_URL = "http://127.0.0.1:9"  # nothing listens: definitions in-process
    ctx = DemoContext(upstream_base_url=settings.DEMO_UPSTREAM_URL)
    for step in ("demo.seed.tenants", "demo.seed.catalog", "demo.seed.policies"):
        importlib.import_module(step).seed(ctx)
    org, agent = ctx.org, ctx.agent

    def explain(tool, arguments=None):
        return policy_explain(org=org, agent=agent, tool=tool, arguments=arguments or {})

    assert explain("tickets.list_tickets").allowed
    assert explain("tickets.update_ticket", {"ticket_id": "TCK-101", "comment": "ok"}).allowed
    assert not explain(
        "tickets.update_ticket", {"ticket_id": "TCK-101", "comment": "x" * 2001}
    ).allowed
    assert not explain("tickets.delete_ticket", {"ticket_id": "TCK-101"}).allowed
    assert not explain("chat.delete_channel", {"channel": "general"}).allowed
    assert not explain("chat.post_message", {"channel": "general", "text": "hi"}).allowed
    post = explain("chat.post_to_triage", {"text": "summary", "channel": "general"})
    assert post.allowed and post.effective_arguments["channel"] == "daily-triage"
    assert post.real_tool == "chat.post_message"
    assert post.pins == [
        "'channel' is set to 'daily-triage' by policy 'daily-triage' (overrides[0].pin.channel);"
        " the agent's value is replaced"
    ]
    assert "at most 5 calls per minute, set by policy 'daily-triage'" in " ".join(post.limits)

    exported = policy_export(org=org)
    assert exported == importlib.import_module("demo.seed.policies").DEMO_POLICY_YAML
    assert policy_apply(org=org, actor=ctx.admin, text=exported, dry_run=True).diff == []
    seed_again = importlib.import_module("demo.seed.policies")
    seed_again.seed(ctx)  # idempotent
    assert policy_export(org=org) == exported

    call(
        org,
        agent,
        "chat",
        "post_message",
        "allow",
        {"text": "summary"},
        extra_exposed="chat.post_to_triage",
    )
    call(
        org,
        agent,
        "tickets",
        "update_ticket",
        "allow",
        {"ticket_id": "TCK-101", "status": "closed"},
    )
    stricter = exported.replace('    - "tickets.update_ticket"\n', "")
    assert stricter != exported, exported
    result = policy_replay(org=org, text=stricter)
    assert result.errors == [], result.errors
    assert result.counts == [
        {
            "agent": agent.slug,
            "tool": "tickets.update_ticket",
            "direction": "allowed → denied",
            "calls": 1,
        }
    ]
