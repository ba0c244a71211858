"""Policy redaction: mask the values at dotted paths (`user.email`, `items.*.token`) in tool
arguments (for the audit trail) and in tool results (before the agent sees them)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mcp_types import CallToolResult, TextContent

MASK = "[redacted by policy]"


def mask_paths(value: Any, paths: Sequence[str]) -> Any:
    """A copy of `value` with every path masked; missing paths are ignored."""
    if not paths:
        return value
    for path in paths:
        value = _mask(value, path.split("."))
    return value


def _mask(node: Any, parts: list[str]) -> Any:
    if not parts:
        return MASK
    head, rest = parts[0], parts[1:]
    if isinstance(node, dict):
        if head == "*":
            return {k: _mask(v, rest) for k, v in node.items()}
        if head in node:
            copy = dict(node)
            copy[head] = _mask(node[head], rest)
            return copy
        return node
    if isinstance(node, list):
        if head == "*":
            return [_mask(v, rest) for v in node]
        if head.isdigit() and int(head) < len(node):
            copy = list(node)
            copy[int(head)] = _mask(node[int(head)], rest)
            return copy
    return node


def redact_result(result: CallToolResult, paths: Sequence[str]) -> CallToolResult:
    """Mask `paths` in structured content and in text blocks that hold JSON."""
    if not paths:
        return result
    content: list[Any] = []
    for block in result.content:
        if isinstance(block, TextContent) and block.text[:1] in "{[":
            try:
                parsed = json.loads(block.text)
            except ValueError:
                content.append(block)
                continue
            masked = mask_paths(parsed, paths)
            if masked is not parsed:
                block = TextContent(type="text", text=json.dumps(masked, ensure_ascii=False))
        content.append(block)
    structured = result.structured_content
    if structured is not None:
        structured = mask_paths(structured, paths)
    return result.model_copy(update={"content": content, "structured_content": structured})
