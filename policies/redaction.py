"""Apply a decision's redaction paths to arguments or results (for audit records and results).

A path is names separated by dots (`user.email`), `*` standing for any key or list index
(`items.*.token`). A path of one name (`password`) masks that key at any depth, which is what
"never log the password" means; a dotted path is anchored at the top.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MASK = "[REDACTED]"


def redact(value: Any, paths: Iterable[str], *, mask: str = MASK) -> Any:
    """A copy of `value` with every field named by `paths` replaced by `mask`.

    The input is not modified; parts that no path touches are shared, not copied.
    """
    anywhere = set()
    anchored = []
    for path in paths:
        parts = path.split(".")
        if len(parts) == 1 and parts[0] != "*":
            anywhere.add(parts[0])
        else:
            anchored.append(parts)
    result = _mask_anywhere(value, anywhere, mask) if anywhere else value
    for parts in anchored:
        result = _mask_path(result, parts, mask)
    return result


def _mask_anywhere(value: Any, keys: set[str], mask: str) -> Any:
    if isinstance(value, dict):
        return {k: mask if k in keys else _mask_anywhere(v, keys, mask) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_anywhere(v, keys, mask) for v in value]
    return value


def _mask_path(value: Any, parts: list[str], mask: str) -> Any:
    head, rest = parts[0], parts[1:]
    if isinstance(value, dict):
        matched = value.keys() if head == "*" else ([head] if head in value else [])
        if not matched:
            return value
        copy = dict(value)
        for key in matched:
            copy[key] = mask if not rest else _mask_path(value[key], rest, mask)
        return copy
    if isinstance(value, list) and (head == "*" or head.isdigit()):
        indexes = range(len(value)) if head == "*" else [int(head)]
        copy = list(value)
        for index in indexes:
            if index < len(copy):
                copy[index] = mask if not rest else _mask_path(value[index], rest, mask)
        return copy
    return value
