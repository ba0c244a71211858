"""Explain and replay: what the policy decides, and what a proposed policy would change.

- `policy_explain`: "may agent X call tool Y with these arguments?" against the live policy (or
  a proposed document), as a verdict and reasons an approver can read.
- `policy_replay`: run a proposed document against the `tool.call` rows of the audit trail over
  a period, and list the calls whose decision would flip (allowed -> denied, denied ->
  allowed), with counts per agent and tool. Reads at most `max_rows` rows (newest first) and
  says so when it stopped early. Nothing is written.

Both reuse the apply path's validation (`services.plan_document`), so a proposal that could not
be applied is reported with the same located errors instead of being replayed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from audit.models import AuditEvent
from policies.argrules import display_value
from policies.engine import CompiledPolicy, Decision, compile
from policies.errors import PolicyDocumentError, ValidationError
from policies.selectors import compiled_policy_for, principal_for_agent
from policies.services import plan_document
from policies.types import Principal
from tenants.models import Agent, Organization

DEFAULT_MAX_ROWS = 10_000
MAX_ROWS_LIMIT = 100_000
MAX_LISTED_FLIPS = 200
DEFAULT_PERIOD = timedelta(days=7)


# --------------------------------------------------------------------------- explain


@dataclass(frozen=True, slots=True)
class Explanation:
    """A decision told in words: `verdict` is one sentence, `reasons` the rules behind it."""

    allowed: bool
    verdict: str
    reasons: list[str]
    matched_rules: list[str]
    effective_arguments: dict[str, Any]
    pins: list[str]
    limits: list[str]
    real_tool: str | None
    policy_version: str
    errors: list[ValidationError] = field(default_factory=list)


def rule_words(rule_id: str) -> str:
    """`policy:daily-triage/limits/perTool/chat.x/rateLimitPerMinute` ->
    `policy 'daily-triage' (limits.perTool.chat.x.rateLimitPerMinute)`."""
    if not rule_id.startswith("policy:"):
        return rule_id
    name, _, path = rule_id.removeprefix("policy:").partition("/")
    return f"policy '{name}' ({path.replace('/', '.')})" if path else f"policy '{name}'"


def _limit_words(limit: Any) -> str:
    per = "minute" if limit.window == "minute" else "day"
    return f"at most {limit.max_calls} calls per {per}, set by {rule_words(limit.rule)}"


def explain_decision(decision: Decision, principal: Principal) -> Explanation:
    who = principal.describe()
    tool = decision.exposed_name
    if decision.allowed:
        verdict = f"Allowed: {who} may call {tool} with these arguments."
    elif decision.error_class == "validation":
        verdict = f"Denied: {who} may call {tool}, but not with these arguments."
    else:
        verdict = f"Denied: {who} may not call {tool}."
    real = decision.tool.exposed_name if decision.tool is not None else None
    return Explanation(
        allowed=decision.allowed,
        verdict=verdict,
        reasons=list(decision.reasons),
        matched_rules=list(decision.matched_rules),
        effective_arguments=dict(decision.effective_arguments),
        pins=[
            f"'{p.argument}' is set to {display_value(p.value)} by {rule_words(p.rule)}"
            + ("; the agent's value is replaced" if p.replaced else "")
            for p in decision.pins
        ],
        limits=[_limit_words(limit) for limit in decision.limits],
        real_tool=real if real != tool else None,
        policy_version=decision.policy_version,
    )


def _proposed_compiled(
    org: Organization, text: str, *, prune: bool = False
) -> tuple[CompiledPolicy | None, list[ValidationError]]:
    try:
        plan = plan_document(org=org, text=text, prune=prune)
    except PolicyDocumentError as exc:
        return None, exc.errors
    if plan.errors:
        return None, plan.errors
    compiled = compile(
        plan.snapshot, plan.live_specs, version="proposed", org_id=org.pk, strict=False
    )
    return compiled, []


def policy_explain(
    *,
    org: Organization,
    agent: Agent,
    tool: str,
    arguments: dict[str, Any] | None = None,
    proposed_text: str | None = None,
    toolset: str | None = None,
) -> Explanation:
    """May `agent` call `tool` (an exposed name, `server.tool`) with `arguments`?

    Against the live policy, or against `proposed_text` (a document as `policy_apply` takes
    it) when given. A proposal with errors yields a denial that lists them.
    """
    principal = principal_for_agent(agent)
    if proposed_text is not None:
        compiled, errors = _proposed_compiled(org, proposed_text)
        if compiled is None:
            return Explanation(
                allowed=False,
                verdict="The proposed policy has errors; fix them to explain a call against it.",
                reasons=[],
                matched_rules=[],
                effective_arguments=dict(arguments or {}),
                pins=[],
                limits=[],
                real_tool=None,
                policy_version="proposed",
                errors=errors,
            )
    else:
        compiled = compiled_policy_for(org)
    decision = compiled.decide(principal, tool, arguments or {}, toolset=toolset or None)
    return explain_decision(decision, principal)


# --------------------------------------------------------------------------- replay


@dataclass(frozen=True, slots=True)
class Flip:
    event_id: int
    occurred_at: datetime
    agent: str
    tool: str
    was_allowed: bool
    now_allowed: bool
    reason: str
    arguments: Any


@dataclass(frozen=True, slots=True)
class ReplayResult:
    errors: list[ValidationError]
    since: datetime
    until: datetime
    scanned: int
    max_rows: int
    truncated: bool
    skipped: int
    to_denied: int
    to_allowed: int
    flips: list[Flip]
    counts: list[dict[str, Any]]
    diff: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return self.to_denied + self.to_allowed


def _recorded_allowed(decision: str, error_class: str) -> bool | None:
    """What the policy decided at the time. A rate-limited call was allowed by the policy (the
    limiter refused it); a row without a decision (an error before the policy ran) is skipped."""
    if error_class == "rate_limit":
        return True
    if decision in ("allow", "allowed"):
        return True
    if decision in ("deny", "denied"):
        return False
    return None


def _principal(agent: Agent, row: dict[str, Any]) -> Principal:
    principal = principal_for_agent(agent)
    # The user the call was made for is what the row recorded, not who the agent acts for now.
    email = row["on_behalf_of_label"] or None
    if email != principal.user_email:
        from dataclasses import replace

        principal = replace(
            principal, user_email=email.lower() if email else None, user_id=row["on_behalf_of_id"]
        )
    return principal


def policy_replay(
    *,
    org: Organization,
    text: str,
    since: datetime | None = None,
    until: datetime | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    prune: bool = False,
) -> ReplayResult:
    """Replay the recorded `tool.call` rows of [since, until) against the proposed document."""
    until = until or timezone.now()
    since = since or until - DEFAULT_PERIOD
    max_rows = max(1, min(int(max_rows), MAX_ROWS_LIMIT))
    compiled, errors = _proposed_compiled(org, text, prune=prune)
    empty = {
        "since": since,
        "until": until,
        "max_rows": max_rows,
        "scanned": 0,
        "truncated": False,
        "skipped": 0,
        "to_denied": 0,
        "to_allowed": 0,
        "flips": [],
        "counts": [],
    }
    if compiled is None:
        return ReplayResult(errors=errors, **empty)
    if since >= until:
        problem = ValidationError("since", "must be earlier than until")
        return ReplayResult(errors=[problem], **empty)

    rows = (
        AuditEvent.objects.for_org(org)
        .filter(action="tool.call", occurred_at__gte=since, occurred_at__lt=until)
        .order_by("-id")
        .values(
            "id",
            "occurred_at",
            "agent_id",
            "agent_label",
            "on_behalf_of_id",
            "on_behalf_of_label",
            "server",
            "tool",
            "decision",
            "error_class",
            "details",
        )[: max_rows + 1]
    )
    agents: dict[int, Agent | None] = {}
    scanned = skipped = to_denied = to_allowed = 0
    truncated = False
    flips: list[Flip] = []
    counts: Counter[tuple[str, str, str]] = Counter()
    for row in rows.iterator(chunk_size=1000):
        if scanned == max_rows:
            truncated = True
            break
        scanned += 1
        was = _recorded_allowed(row["decision"], row["error_class"])
        agent_id = row["agent_id"]
        if agent_id is not None and agent_id not in agents:
            agents[agent_id] = (
                Agent.objects.for_org(org)
                .select_related("team", "acting_for")
                .filter(pk=agent_id)
                .first()
            )
        agent = agents.get(agent_id) if agent_id is not None else None
        details = row["details"] if isinstance(row["details"], dict) else {}
        exposed = details.get("exposed_tool") or (
            f"{row['server']}.{row['tool']}" if row["server"] else row["tool"]
        )
        if was is None or agent is None or not exposed:
            skipped += 1
            continue
        arguments = details.get("arguments")
        decision = compiled.decide(
            _principal(agent, row),
            exposed,
            arguments if isinstance(arguments, dict) else {},
            toolset=details.get("toolset") or None,
        )
        if decision.allowed == was:
            continue
        if was:
            to_denied += 1
        else:
            to_allowed += 1
        direction = "allowed → denied" if was else "denied → allowed"
        counts[(agent.slug, exposed, direction)] += 1
        if len(flips) < MAX_LISTED_FLIPS:
            flips.append(
                Flip(
                    event_id=row["id"],
                    occurred_at=row["occurred_at"],
                    agent=agent.slug,
                    tool=exposed,
                    was_allowed=was,
                    now_allowed=decision.allowed,
                    reason="; ".join(decision.reasons[:3]),
                    arguments=arguments,
                )
            )
    return ReplayResult(
        errors=[],
        since=since,
        until=until,
        scanned=scanned,
        max_rows=max_rows,
        truncated=truncated,
        skipped=skipped,
        to_denied=to_denied,
        to_allowed=to_allowed,
        flips=flips,
        counts=[
            {"agent": agent, "tool": tool, "direction": direction, "calls": n}
            for (agent, tool, direction), n in counts.most_common()
        ],
    )
