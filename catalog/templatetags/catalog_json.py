"""Showing tool definitions to reviewers: JSON as JSON (not Python reprs), and a line diff of
two JSON values so a changed schema shows exactly which lines changed."""

import difflib
import json
from typing import Any

from django import template

register = template.Library()


def to_json(value: Any) -> str:
    """Indented JSON with the upstream's key order and non-ASCII kept readable (invisible
    characters stay visible through the scanners' findings, not here)."""
    if value is None:
        return "—"
    return json.dumps(value, indent=2, ensure_ascii=False)


@register.filter(name="pretty_json")
def pretty_json(value: Any) -> str:
    return to_json(value)


@register.simple_tag
def json_line_diff(before: Any, after: Any) -> list[dict[str, str]]:
    """[{kind: "same"|"del"|"add"|"gap", text}] of the pretty JSON of `before` vs `after`, with
    three lines of context around each change."""
    old = to_json(before).splitlines() if before is not None else []
    new = to_json(after).splitlines() if after is not None else []
    lines: list[dict[str, str]] = []
    for line in difflib.unified_diff(old, new, lineterm="", n=3):
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("@@"):
            if lines:
                lines.append({"kind": "gap", "text": "…"})
            continue
        kind = {"-": "del", "+": "add"}.get(line[:1], "same")
        lines.append({"kind": kind, "text": line[1:]})
    return lines
