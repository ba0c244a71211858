"""Safe YAML reading for policy documents: a small tree of nodes that remember their lines.

PyYAML's safe loader still expands aliases (a "billion laughs" document is a few hundred bytes)
and silently keeps the last of two duplicate keys. Here the document is read event by event
and refused early on: aliases and anchors, tags, merge keys (`<<`), dates, non-string keys,
duplicate keys, more than one document, more than `MAX_DEPTH` levels or `MAX_NODES` values.
Scalars are typed with YAML 1.1 rules (as PyYAML does): quote a value to keep it a string.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from policies.checks import type_name

MAX_DEPTH = 20
MAX_NODES = 100_000


@dataclass(slots=True)
class Scalar:
    line: int
    value: Any


@dataclass(slots=True)
class Map:
    line: int
    items: list[tuple[str, Any, int]] = field(default_factory=list)
    pending: tuple[str, int] | None = None
    keys: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Seq:
    line: int
    items: list[Any] = field(default_factory=list)


class Refused(Exception):
    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


_RESOLVER = yaml.resolver.Resolver()
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_STR = "tag:yaml.org,2002:str"


def _scalar_value(event: yaml.ScalarEvent, line: int) -> Any:
    if event.tag not in (None, "!"):
        raise Refused(line, f"YAML tags ({event.tag}) are not allowed; write plain values")
    if event.tag == "!" or not event.implicit[0]:
        return event.value  # quoted (or explicitly untagged): always a string
    tag = _RESOLVER.resolve(yaml.ScalarNode, event.value, (True, False))
    if tag == _STR:
        return event.value
    node = yaml.ScalarNode(tag, event.value)
    try:
        if tag.endswith(":null"):
            return None
        if tag.endswith(":bool"):
            return _CONSTRUCTOR.construct_yaml_bool(node)
        if tag.endswith(":int"):
            return _CONSTRUCTOR.construct_yaml_int(node)
        if tag.endswith(":float"):
            value = _CONSTRUCTOR.construct_yaml_float(node)
            if not math.isfinite(value):
                raise Refused(line, f"'{event.value}': only finite numbers are allowed")
            return value
    except ValueError as exc:
        raise Refused(line, f"'{event.value[:40]}' is not a usable number ({exc})") from None
    if tag.endswith(":timestamp"):
        raise Refused(line, f"'{event.value}' reads as a date; quote it to make it a string")
    if tag.endswith(":merge"):
        raise Refused(line, "merge keys (<<) are not allowed; write the keys out")
    return event.value


def _attach(stack: list[Map | Seq], node: Any) -> None:
    top = stack[-1]
    if isinstance(top, Seq):
        top.items.append(node)
        return
    if top.pending is None:
        if not isinstance(node, Scalar) or not isinstance(node.value, str):
            what = "a mapping or list" if not isinstance(node, Scalar) else type_name(node.value)
            raise Refused(node.line, f"keys must be strings, not {what}; quote the key")
        if node.value in top.keys:
            raise Refused(
                node.line,
                f"duplicate key '{node.value}' (first at line {top.keys[node.value]}); "
                "YAML would silently keep only the last one",
            )
        top.keys[node.value] = node.line
        top.pending = (node.value, node.line)
        return
    key, line = top.pending
    top.items.append((key, node, line))
    top.pending = None


def load(text: str) -> Any:
    """Build a tree of Map/Seq/Scalar from YAML events, refusing unsafe constructs early."""
    root: Any = None
    stack: list[Map | Seq] = []
    documents = 0
    nodes = 0
    try:
        for event in yaml.parse(text, Loader=yaml.CSafeLoader):
            line = event.start_mark.line + 1 if event.start_mark else None
            if isinstance(event, yaml.AliasEvent):
                raise Refused(line, "aliases (*name) are not allowed; write the value out")
            if getattr(event, "anchor", None):
                raise Refused(line, "anchors (&name) are not allowed; write the value out")
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise Refused(line, "a file holds one YAML document (remove the second ---)")
                continue
            if not isinstance(event, yaml.NodeEvent | yaml.CollectionEndEvent):
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                stack.pop()
                continue
            nodes += 1
            if nodes > MAX_NODES:
                raise Refused(line, f"the document has more than {MAX_NODES} values")
            if isinstance(event, yaml.ScalarEvent):
                node: Any = Scalar(line or 0, _scalar_value(event, line or 0))
            else:
                if event.tag is not None:
                    raise Refused(line, f"YAML tags ({event.tag}) are not allowed")
                node = (
                    Map(line or 0) if isinstance(event, yaml.MappingStartEvent) else Seq(line or 0)
                )
            if stack:
                _attach(stack, node)
            else:
                root = node
            if isinstance(node, Map | Seq):
                stack.append(node)
                if len(stack) > MAX_DEPTH:
                    raise Refused(line, f"the document is nested deeper than {MAX_DEPTH} levels")
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "is not valid YAML"
        raise Refused(mark.line + 1 if mark else None, f"not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise Refused(None, f"not valid YAML: {exc}") from None
    return root


def from_json(value: Any, line: int = 0, depth: int = 0) -> Any:
    """The node tree of an already-loaded JSON value (e.g. a spec stored in a JSON column)."""
    if depth > MAX_DEPTH:
        raise Refused(None, f"the value is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        node = Map(line)
        for key, item in value.items():
            if not isinstance(key, str):
                raise Refused(None, f"keys must be strings, not {type_name(key)}")
            node.items.append((key, from_json(item, line, depth + 1), line))
        return node
    if isinstance(value, list | tuple):
        return Seq(line, [from_json(item, line, depth + 1) for item in value])
    if value is None or isinstance(value, str | bool | int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise Refused(None, "only finite numbers are allowed")
        return Scalar(line, value)
    raise Refused(None, f"{type(value).__name__} is not a JSON value")


def resolves_to_string(text: str) -> bool:
    """True when `text`, written as a plain (unquoted) scalar, would read back as a string."""
    return _RESOLVER.resolve(yaml.ScalarNode, text, (True, False)) == _STR
