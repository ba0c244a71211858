"""Writing the audit trail.

`record(...)` is called by every service inside the same transaction as the change it describes,
so a change and its audit row commit or roll back together.
"""

from collections.abc import Sequence
from typing import Any

from django.db import models, transaction

from audit.context import current
from audit.models import AuditEvent, Outcome
from audit.redaction import redact

_LABEL_MAX = 255


def _label(obj: object | None, limit: int) -> str:
    if obj is None:
        return ""
    return str(obj)[:limit]


def build_event(
    *,
    org: Any | None,
    action: str,
    actor: Any | None = None,
    agent: Any | None = None,
    on_behalf_of: Any | None = None,
    target: models.Model | None = None,
    target_type: str = "",
    target_id: str | int = "",
    target_label: str = "",
    outcome: str = Outcome.SUCCESS,
    details: dict[str, Any] | None = None,
    redact_keys: frozenset[str] = frozenset(),
    **columns: Any,
) -> AuditEvent:
    """The unsaved audit event `record(...)` would append (same arguments), for writers that
    insert several events at once with `save_events`, e.g. the gateway's group commit."""
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or target.pk
        target_label = target_label or str(target)
    ctx = current()
    event = AuditEvent(
        organization=org,
        action=action,
        outcome=outcome,
        actor_user_id=getattr(actor, "pk", None),
        actor_label=_label(actor, 254),
        agent_id=getattr(agent, "pk", None),
        agent_label=_label(getattr(agent, "slug", agent), 100),
        on_behalf_of_id=getattr(on_behalf_of, "pk", None),
        on_behalf_of_label=_label(on_behalf_of, 254),
        target_type=target_type,
        target_id=str(target_id)[:64] if target_id != "" else "",
        target_label=str(target_label)[:_LABEL_MAX],
        details=redact(details or {}, extra_keys=redact_keys),
        request_id=ctx.request_id if ctx else "",
        source_ip=ctx.source_ip if ctx else None,
        **columns,
    )
    return event


def record(
    *,
    org: Any | None,
    action: str,
    actor: Any | None = None,
    agent: Any | None = None,
    on_behalf_of: Any | None = None,
    target: models.Model | None = None,
    target_type: str = "",
    target_id: str | int = "",
    target_label: str = "",
    outcome: str = Outcome.SUCCESS,
    details: dict[str, Any] | None = None,
    redact_keys: frozenset[str] = frozenset(),
    **columns: Any,
) -> AuditEvent:
    """Append one audit event. Secrets in `details` are redacted before they are stored.

    `actor` is the human who acted (or None), `agent` the agent principal, `on_behalf_of` the user
    an agent acted for. `target` (a model instance) fills target type, id and label; explicit
    target_* arguments win. Extra keyword arguments fill the gateway columns (server, tool,
    decision, error_class, latency_ms, upstream_latency_ms) and must name real columns.
    """
    event = build_event(
        org=org,
        action=action,
        actor=actor,
        agent=agent,
        on_behalf_of=on_behalf_of,
        target=target,
        target_type=target_type,
        target_id=target_id,
        target_label=target_label,
        outcome=outcome,
        details=details,
        redact_keys=redact_keys,
        **columns,
    )
    event.save(force_insert=True)
    return event


def save_events(events: Sequence[AuditEvent]) -> None:
    """Insert events built by `build_event` in one transaction: all of them or none."""
    for event in events:
        if event.pk is not None or not event._state.adding:
            raise RuntimeError("Audit events are append-only and cannot be changed.")
    if len(events) == 1 and transaction.get_autocommit():
        events[0].save(force_insert=True)  # one INSERT is its own transaction: one round trip
        return
    with transaction.atomic():
        AuditEvent.objects.bulk_create(events)
