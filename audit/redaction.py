"""Redaction of secrets before anything is written to the audit trail or a log line.

Keys that name a secret have their values replaced, at any depth; strings that look like bearer
secrets we issue (agent keys, personal tokens) or common token formats are masked wherever they
appear. Redaction is deliberately over-eager: an auditor loses little from a masked value, and a
leaked credential in an append-only trail cannot be removed.
"""

import re
from typing import Any

REDACTED = "[redacted]"
_SECRET_KEY_RE = re.compile(
    r"(pass(word)?|secret|token|api[-_]?key|authorization|cookie|credential|private[-_]?key|"
    r"client[-_]?secret|refresh|access[-_]?key|session)",
    re.IGNORECASE,
)
_SECRET_VALUE_RE = re.compile(
    r"(mg[wp]_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}"  # our agent keys and personal tokens
    r"|Bearer\s+[A-Za-z0-9._~+/=-]{8,}"  # bearer headers
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JWTs
    r"|gh[pousr]_[A-Za-z0-9]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|sk-[A-Za-z0-9]{20,})"
)
MAX_DEPTH = 12
MAX_STRING = 4096


_key_verdicts: dict[str, bool] = {}
_KEY_VERDICTS_MAX = 4096


def is_secret_key(key: str) -> bool:
    # Keys repeat from record to record (every tool.call has the same few): remember the
    # regex's verdict, for a bounded number of distinct keys.
    verdict = _key_verdicts.get(key)
    if verdict is None:
        verdict = bool(_SECRET_KEY_RE.search(key))
        if len(_key_verdicts) < _KEY_VERDICTS_MAX:
            _key_verdicts[key] = verdict
    return verdict


def _may_hold_token(value: str) -> bool:
    # Every alternative of _SECRET_VALUE_RE starts with one of these literals: a string with
    # none of them cannot match (substring tests cost a fraction of the regex's scan, and
    # every audit record carries a dozen short strings).
    return (
        "mg" in value
        or "Bearer" in value
        or "eyJ" in value
        or "gh" in value
        or "xox" in value
        or "sk-" in value
    )


def redact_string(value: str) -> str:
    if _may_hold_token(value):
        value = _SECRET_VALUE_RE.sub(REDACTED, value)
    if len(value) > MAX_STRING:
        value = value[:MAX_STRING] + f"… [{len(value) - MAX_STRING} more characters]"
    return value


def redact(value: Any, *, extra_keys: frozenset[str] = frozenset(), _depth: int = 0) -> Any:
    """A JSON-safe copy of `value` with secret-looking keys and values masked."""
    return _redact(value, extra_keys, _depth)


def _redact(value: Any, extra_keys: frozenset[str], depth: int) -> Any:
    # Positional arguments and strings tested first: every audit record passes a dozen values
    # through here, most of them strings.
    if depth > MAX_DEPTH:
        return "[too deep]"
    if isinstance(value, str):
        return redact_string(value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            key_str = key if type(key) is str else str(key)
            if is_secret_key(key_str) or key_str in extra_keys:
                out[key_str] = REDACTED
            else:
                out[key_str] = _redact(item, extra_keys, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_redact(item, extra_keys, depth + 1) for item in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact_string(str(value))
