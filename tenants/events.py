"""How tenants' services write to the audit trail without importing the (higher) audit app.

The audit app registers its recorder at start-up (AuditConfig.ready). Recording is mandatory: if
no recorder is registered, the state change fails rather than happening unaudited.
"""

from collections.abc import Callable
from typing import Any

_recorder: Callable[..., Any] | None = None


def register_recorder(recorder: Callable[..., Any]) -> None:
    global _recorder
    _recorder = recorder


def record_event(**kwargs: Any) -> Any:
    if _recorder is None:
        raise RuntimeError("No audit recorder is registered: refusing an unaudited change.")
    return _recorder(**kwargs)


# Hooks for higher apps that must react when someone leaves an organization (the credentials app
# revokes that user's upstream grants). Each runs inside the transaction that ends the membership.
_membership_ended_hooks: list[Callable[..., None]] = []


def on_membership_ended(hook: Callable[..., None]) -> None:
    """Register `hook(*, org, user, actor)`; called in the same transaction as the removal."""
    if hook not in _membership_ended_hooks:
        _membership_ended_hooks.append(hook)


def membership_ended(*, org: Any, user: Any, actor: Any) -> None:
    for hook in list(_membership_ended_hooks):
        hook(org=org, user=user, actor=actor)
