"""The audit trail. Every app records state changes with `audit.record(...)` (see audit.services)."""


def record(**kwargs):  # type: ignore[no-untyped-def]
    """Shortcut for `audit.services.record` (imported lazily so models load first)."""
    from audit.services import record as _record

    return _record(**kwargs)
