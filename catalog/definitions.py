"""Tool definitions as plain data, their canonical hash, and the checks a fetched listing must
pass before anything is stored.

The hash is what approval pins. It covers exactly the fields an agent's model reads or the
gateway enforces (name, title, description, input schema, output schema, annotations), as
canonical JSON (sorted keys, no whitespace, UTF-8), so the same definition always hashes the
same on every worker, whatever order the upstream sent the keys in.
"""

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from catalog.errors import UpstreamError

TOOL_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class ToolDefinition:
    name: str
    title: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    annotations: dict[str, Any] | None

    def canonical(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": self.input_schema,
            "outputSchema": self.output_schema,
            "annotations": self.annotations,
        }

    @property
    def definition_hash(self) -> str:
        return definition_hash(self.canonical())

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
            "annotations": self.annotations,
        }


def definition_hash(canonical: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(canonical).encode("utf-8")).hexdigest()


def tools_digest(hashes: Iterable[tuple[str, str]]) -> str:
    """One hash over a whole listing: (name, definition_hash) pairs in name order."""
    return hashlib.sha256(canonical_json(sorted(hashes)).encode("utf-8")).hexdigest()


def from_mcp(tool: Any) -> ToolDefinition:
    """A ToolDefinition from an `mcp.types.Tool` (or its camelCase dict form)."""
    raw = tool if isinstance(tool, Mapping) else tool.model_dump(by_alias=True, exclude_none=True)
    annotations = raw.get("annotations")
    if isinstance(annotations, Mapping):
        annotations = {k: v for k, v in annotations.items() if v is not None} or None
    return ToolDefinition(
        name=str(raw.get("name", "")),
        title=str(raw.get("title") or ""),
        description=str(raw.get("description") or ""),
        input_schema=dict(raw.get("inputSchema") or {}),
        output_schema=dict(raw["outputSchema"]) if raw.get("outputSchema") else None,
        annotations=dict(annotations) if annotations else None,
    )


def validate_listing(tools: list[ToolDefinition]) -> None:
    """Refuse a listing the gateway could not enforce or a reviewer could not read, naming the
    first problems. Raises UpstreamError(code="invalid_definitions" | "too_many_tools")."""
    max_tools = settings.CATALOG_MAX_TOOLS
    if len(tools) > max_tools:
        raise UpstreamError(
            f"The server lists {len(tools)} tools; the catalog accepts at most {max_tools} per "
            "server (CATALOG_MAX_TOOLS). Split it into smaller servers.",
            code="too_many_tools",
        )
    problems: list[str] = []
    seen: set[str] = set()
    max_desc = settings.CATALOG_MAX_DESCRIPTION_CHARS
    max_schema = settings.CATALOG_MAX_SCHEMA_BYTES
    for tool in tools:
        label = repr(tool.name[:80])
        if not TOOL_NAME_RE.match(tool.name):
            problems.append(
                f"tool {label}: the name must be 1-128 letters, digits, '_', '-' or '.'"
            )
        if tool.name in seen:
            problems.append(f"tool {label} is listed twice")
        seen.add(tool.name)
        if len(tool.description) > max_desc:
            problems.append(
                f"tool {label}: the description has {len(tool.description):,} characters "
                f"(at most {max_desc:,})"
            )
        if len(tool.title) > 200:
            problems.append(f"tool {label}: the title is longer than 200 characters")
        for field, schema in (
            ("input schema", tool.input_schema),
            ("output schema", tool.output_schema),
        ):
            if schema is None:
                continue
            size = len(canonical_json(schema).encode("utf-8"))
            if size > max_schema:
                problems.append(
                    f"tool {label}: the {field} is {size:,} bytes (at most {max_schema:,})"
                )
                continue
            if schema.get("type") != "object":
                problems.append(f"tool {label}: the {field} must have type 'object'")
                continue
            try:
                Draft202012Validator.check_schema(schema)
            except SchemaError as exc:
                problems.append(
                    f"tool {label}: the {field} is not a valid JSON Schema ({exc.message[:200]})"
                )
        if len(problems) >= 5:
            break
    if problems:
        raise UpstreamError(
            "The server's tool definitions cannot be accepted: " + "; ".join(problems[:5]) + ".",
            code="invalid_definitions",
        )
