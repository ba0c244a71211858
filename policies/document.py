"""The policy YAML format: parse, validate against a catalog, export canonically, diff.

The short form is one policy (the shape of issue 4); the long form holds several plus the tool
groups they use:

    toolGroups:
      daily-triage: ["tickets/list_*", "tickets.get_ticket", "chat.post_to_triage"]
    policies:
      - name: daily-triage
        description: "What the triage agent may do"
        enabled: false                          # kept and exported, grants and denies nothing
        consumer: daily-triage-agent            # shorthand for subjects.agents: [that agent]
        subjects:
          teams: ["support"]                    # also: agents (or "*"), users, agentTags
        allow:
          toolGroups: ["daily-triage"]          # also: servers, tools ("server.tool", "s/t_*")
        deny:
          tools: ["chat.delete_channel"]        # deny always wins over allow
        arguments:
          tickets.list_tickets:
            limit: {maximum: 50}                # pinned, enum, pattern, maxLength, minimum,
                                                # maximum, required
        overrides:
          - name: chat.post_to_triage
            tool: chat.post_message
            description: "Post a message to #triage"
            pin:
              channel: "triage"
        outbound:
          allowDomains: ["api.slack.com"]
        limits:
          rateLimitPerMinute: 120               # also: rateLimitPerDay, per: organization,
          perTool:                              # perTool: {"tool": {rateLimitPerMinute: n}}
            chat.post_to_triage: {rateLimitPerMinute: 5}
        redact:
          arguments: ["text"]
          results: ["user.email"]

`name` defaults to `consumer` and is left out on export when equal to it; `enabled` defaults
to true and is written only when false.

Reading is defensive: safe YAML only (no tags, no anchors or aliases, so no "billion laughs"),
at most 256 KiB and 20 levels of nesting, no duplicate keys, no unknown keys, no dates. Every
problem is reported with its location (`policies[0].deny.tools[1]`) and line.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from policies.checks import check_document, check_policy, location, type_name
from policies.errors import PolicyDocumentError, ValidationError
from policies.safeyaml import Map, Refused, Scalar, Seq, from_json, load, resolves_to_string
from policies.types import (
    ArgumentRule,
    Limits,
    Outbound,
    Override,
    Pin,
    PolicyDocument,
    PolicySpec,
    Redaction,
    Subjects,
    ToolArguments,
    ToolGroupSpec,
    ToolLimit,
    ToolRules,
)
from policies.validation import validate_document

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "diff_documents",
    "export_document",
    "parse_document",
    "policy_from_mapping",
    "policy_to_mapping",
    "text_diff",
    "validate_document",
]

MAX_DOCUMENT_BYTES = 256 * 1024
LINE_WIDTH = 100

POLICY_KEYS = (
    "name",
    "description",
    "enabled",
    "consumer",
    "subjects",
    "allow",
    "deny",
    "arguments",
    "overrides",
    "outbound",
    "limits",
    "redact",
)
SUBJECT_KEYS = ("agents", "teams", "users", "agentTags")
RULE_KEYS = ("toolGroups", "servers", "tools")
ARGUMENT_KEYS = ("pinned", "enum", "pattern", "maxLength", "minimum", "maximum", "required")
OVERRIDE_KEYS = ("name", "tool", "title", "description", "pin")
LIMIT_KEYS = ("rateLimitPerMinute", "rateLimitPerDay", "per", "perTool")
TOOL_LIMIT_KEYS = ("rateLimitPerMinute", "rateLimitPerDay")
REDACT_KEYS = ("arguments", "results")
DOCUMENT_KEYS = ("toolGroups", "policies")

# =========================================================================== node -> specs


class _Reader:
    """Turns the node tree into specs, recording type errors, unknown keys and lines."""

    def __init__(self) -> None:
        self.errors: list[ValidationError] = []
        self.lines: dict[str, int] = {}
        self.long_form = False

    def error(self, where: str, line: int | None, message: str) -> None:
        self.errors.append(ValidationError(where, message, "error", line))

    # ----------------------------------------------------------------- primitives

    def mapping(self, node: Any, where: str, keys: Sequence[str] | None) -> dict[str, Any]:
        """Entries of a mapping (checked against `keys` when given); {} after an error."""
        if not isinstance(node, Map):
            self.error(where, node.line, f"must be a mapping, not {self._what(node)}")
            return {}
        result: dict[str, Any] = {}
        for key, value, line in node.items:
            here = location(where, key)
            self.lines.setdefault(here, line)
            if keys is not None and key not in keys:
                guess = difflib.get_close_matches(key, keys, n=1)
                hint = f"did you mean '{guess[0]}'? " if guess else ""
                self.error(
                    here, line, f"unknown key '{key}'; {hint}(expected one of: {', '.join(keys)})"
                )
                continue
            result[key] = value
        return result

    def string(self, node: Any, where: str) -> str | None:
        if isinstance(node, Scalar) and isinstance(node.value, str):
            return node.value
        self.error(where, node.line, f"must be a string, not {self._what(node)}")
        return None

    def strings(self, node: Any, where: str) -> tuple[str, ...]:
        if not isinstance(node, Seq):
            self.error(where, node.line, f"must be a list of strings, not {self._what(node)}")
            return ()
        values = []
        for index, item in enumerate(node.items):
            here = location(where, index)
            self.lines.setdefault(here, item.line)
            value = self.string(item, here)
            if value is not None:
                values.append(value)
        return tuple(values)

    def integer(self, node: Any, where: str) -> int | None:
        value = node.value if isinstance(node, Scalar) else None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        self.error(where, node.line, f"must be a whole number, not {self._what(node)}")
        return None

    def number(self, node: Any, where: str) -> int | float | None:
        value = node.value if isinstance(node, Scalar) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        self.error(where, node.line, f"must be a number, not {self._what(node)}")
        return None

    def boolean(self, node: Any, where: str) -> bool | None:
        if isinstance(node, Scalar) and isinstance(node.value, bool):
            return node.value
        self.error(where, node.line, f"must be true or false, not {self._what(node)}")
        return None

    def json(self, node: Any) -> Any:
        if isinstance(node, Scalar):
            return node.value
        if isinstance(node, Seq):
            return [self.json(item) for item in node.items]
        return {key: self.json(value) for key, value, _line in node.items}

    @staticmethod
    def _what(node: Any) -> str:
        if isinstance(node, Map):
            return "a mapping"
        if isinstance(node, Seq):
            return "a list"
        return type_name(node.value)

    # ----------------------------------------------------------------- sections

    def document(self, root: Any) -> PolicyDocument:
        if not isinstance(root, Map):
            self.error(
                "",
                getattr(root, "line", None),
                "a policy document is a mapping: one policy (consumer:, allow:, ...) or "
                "toolGroups: and policies:",
            )
            return PolicyDocument()
        keys = {key for key, _, _ in root.items}
        if keys & set(DOCUMENT_KEYS):
            self.long_form = True
            top = self.mapping(root, "", DOCUMENT_KEYS)
            groups = []
            if "toolGroups" in top:
                for slug, refs in self.mapping(top["toolGroups"], "toolGroups", None).items():
                    groups.append(
                        ToolGroupSpec(
                            slug=slug, tools=self.strings(refs, location("toolGroups", slug))
                        )
                    )
            policies = []
            if "policies" in top:
                node = top["policies"]
                if not isinstance(node, Seq):
                    self.error("policies", node.line, "must be a list of policies")
                else:
                    for index, item in enumerate(node.items):
                        self.lines.setdefault(f"policies[{index}]", item.line)
                        policies.append(self.policy(item, f"policies[{index}]"))
            return PolicyDocument(tool_groups=tuple(groups), policies=tuple(policies))
        return PolicyDocument(policies=(self.policy(root, ""),))

    def policy(self, node: Any, prefix: str) -> PolicySpec:
        m = self.mapping(node, prefix, POLICY_KEYS)
        consumer = (
            self.string(m["consumer"], location(prefix, "consumer")) if "consumer" in m else None
        )
        if "name" in m:
            name = self.string(m["name"], location(prefix, "name")) or ""
        else:
            name = consumer or ""
        description = ""
        if "description" in m:
            description = self.string(m["description"], location(prefix, "description")) or ""
        enabled = True
        if "enabled" in m:
            flag = self.boolean(m["enabled"], location(prefix, "enabled"))
            enabled = True if flag is None else flag
        return PolicySpec(
            name=name,
            description=description,
            enabled=enabled,
            consumer=consumer,
            subjects=self.subjects(m.get("subjects"), location(prefix, "subjects")),
            allow=self.rules(m.get("allow"), location(prefix, "allow")),
            deny=self.rules(m.get("deny"), location(prefix, "deny")),
            arguments=self.arguments(m.get("arguments"), location(prefix, "arguments")),
            overrides=self.overrides(m.get("overrides"), location(prefix, "overrides")),
            outbound=self.outbound(m.get("outbound"), location(prefix, "outbound")),
            limits=self.limits(m.get("limits"), location(prefix, "limits")),
            redact=self.redact(m.get("redact"), location(prefix, "redact")),
        )

    def _lists(self, node: Any, where: str, keys: Sequence[str]) -> dict[str, tuple[str, ...]]:
        if node is None:
            return {}
        m = self.mapping(node, where, keys)
        return {key: self.strings(value, location(where, key)) for key, value in m.items()}

    def subjects(self, node: Any, where: str) -> Subjects:
        m = self._lists(node, where, SUBJECT_KEYS)
        return Subjects(
            agents=m.get("agents", ()),
            teams=m.get("teams", ()),
            users=m.get("users", ()),
            agent_tags=m.get("agentTags", ()),
        )

    def rules(self, node: Any, where: str) -> ToolRules:
        m = self._lists(node, where, RULE_KEYS)
        return ToolRules(
            tool_groups=m.get("toolGroups", ()),
            servers=m.get("servers", ()),
            tools=m.get("tools", ()),
        )

    def arguments(self, node: Any, where: str) -> tuple[ToolArguments, ...]:
        if node is None:
            return ()
        result = []
        for tool, args in self.mapping(node, where, None).items():
            tool_where = location(where, tool)
            rules = []
            for argument, rule_node in self.mapping(args, tool_where, None).items():
                rule = self.argument_rule(argument, rule_node, location(tool_where, argument))
                if rule is not None:
                    rules.append(rule)
            result.append(ToolArguments(tool=tool, rules=tuple(rules)))
        return tuple(result)

    def argument_rule(self, argument: str, node: Any, where: str) -> ArgumentRule | None:
        m = self.mapping(node, where, ARGUMENT_KEYS)
        if not isinstance(node, Map):
            return None
        values: dict[str, Any] = {}
        if "pinned" in m:
            values["pinned"] = Pin(self.json(m["pinned"]))
        if "enum" in m:
            enum_node = m["enum"]
            if isinstance(enum_node, Seq):
                values["enum"] = tuple(self.json(item) for item in enum_node.items)
            else:
                self.error(location(where, "enum"), enum_node.line, "must be a list of values")
        if "pattern" in m:
            values["pattern"] = self.string(m["pattern"], location(where, "pattern"))
        if "maxLength" in m:
            values["max_length"] = self.integer(m["maxLength"], location(where, "maxLength"))
        for key in ("minimum", "maximum"):
            if key in m:
                values[key] = self.number(m[key], location(where, key))
        if "required" in m:
            values["required"] = bool(self.boolean(m["required"], location(where, "required")))
        return ArgumentRule(argument=argument, **values)

    def overrides(self, node: Any, where: str) -> tuple[Override, ...]:
        if node is None:
            return ()
        if not isinstance(node, Seq):
            self.error(where, node.line, "must be a list of overrides (- name: ..., tool: ...)")
            return ()
        result = []
        for index, item in enumerate(node.items):
            here = location(where, index)
            self.lines.setdefault(here, item.line)
            m = self.mapping(item, here, OVERRIDE_KEYS)
            if not isinstance(item, Map):
                continue
            for required in ("name", "tool"):
                if required not in m:
                    self.error(
                        location(here, required), item.line, f"an override needs '{required}'"
                    )
            pin = {}
            if "pin" in m:
                pin = {
                    argument: self.json(value)
                    for argument, value in self.mapping(
                        m["pin"], location(here, "pin"), None
                    ).items()
                }
            result.append(
                Override(
                    name=self.string(m["name"], location(here, "name")) or ""
                    if "name" in m
                    else "",
                    tool=self.string(m["tool"], location(here, "tool")) or ""
                    if "tool" in m
                    else "",
                    title=self.string(m["title"], location(here, "title"))
                    if "title" in m
                    else None,
                    description=(
                        self.string(m["description"], location(here, "description"))
                        if "description" in m
                        else None
                    ),
                    pin=pin,
                )
            )
        return tuple(result)

    def outbound(self, node: Any, where: str) -> Outbound:
        m = self._lists(node, where, ("allowDomains",))
        return Outbound(allow_domains=m.get("allowDomains", ()))

    def limits(self, node: Any, where: str) -> Limits:
        if node is None:
            return Limits()
        m = self.mapping(node, where, LIMIT_KEYS)
        per = "principal"
        if "per" in m:
            per = self.string(m["per"], location(where, "per")) or "principal"
        per_tool = []
        if "perTool" in m:
            for tool, limit_node in self.mapping(
                m["perTool"], location(where, "perTool"), None
            ).items():
                here = location(where, "perTool", tool)
                lm = self.mapping(limit_node, here, TOOL_LIMIT_KEYS)
                per_tool.append(
                    ToolLimit(
                        tool=tool,
                        per_minute=self._rate(lm, "rateLimitPerMinute", here),
                        per_day=self._rate(lm, "rateLimitPerDay", here),
                    )
                )
        return Limits(
            per_minute=self._rate(m, "rateLimitPerMinute", where),
            per_day=self._rate(m, "rateLimitPerDay", where),
            per=per,  # type: ignore[arg-type]  # checked by check_policy
            per_tool=tuple(per_tool),
        )

    def _rate(self, m: dict[str, Any], key: str, where: str) -> int | None:
        return self.integer(m[key], location(where, key)) if key in m else None

    def redact(self, node: Any, where: str) -> Redaction:
        m = self._lists(node, where, REDACT_KEYS)
        return Redaction(arguments=m.get("arguments", ()), results=m.get("results", ()))


def _line_for(lines: Mapping[str, int], where: str) -> int | None:
    """The line of `where`, or of its closest recorded parent."""
    candidate = where
    while candidate:
        if candidate in lines:
            return lines[candidate]
        cut = max(candidate.rfind("."), candidate.rfind("["))
        candidate = candidate[:cut] if cut > 0 else ""
    return None


def parse_document(text: str | bytes) -> PolicyDocument:
    """Parse a policy YAML document, or raise PolicyDocumentError listing every problem.

    Checks structure only (types, keys, shapes of names, patterns, regexes, domains, pins
    against their own rules); `validate_document` checks the document against a catalog.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_DOCUMENT_BYTES:
            raise PolicyDocumentError([_too_big(len(text))])
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyDocumentError(
                [ValidationError("", f"the file is not UTF-8 text (byte {exc.start})")]
            ) from None
    if not isinstance(text, str):
        raise PolicyDocumentError([ValidationError("", "the document must be text")])
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_DOCUMENT_BYTES:
        raise PolicyDocumentError([_too_big(size)])
    try:
        root = load(text)
    except Refused as exc:
        raise PolicyDocumentError([ValidationError("", exc.message, "error", exc.line)]) from None
    if root is None or (isinstance(root, Scalar) and root.value is None):
        raise PolicyDocumentError([ValidationError("", "the document is empty")])
    reader = _Reader()
    document = reader.document(root)
    problems = list(reader.errors)
    seen = {e.location for e in problems}
    for problem in check_document(document, long_form=reader.long_form):
        if problem.location in seen:
            continue  # already explained by a type error at the same place
        seen.add(problem.location)
        problems.append(
            ValidationError(
                problem.location,
                problem.message,
                problem.severity,
                _line_for(reader.lines, problem.location),
            )
        )
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise PolicyDocumentError(errors)
    return document


def _too_big(size: int) -> ValidationError:
    return ValidationError(
        "",
        f"the document is {size} bytes; the limit is {MAX_DOCUMENT_BYTES} bytes (256 KiB): "
        "split it into several files",
    )


# =========================================================================== export


class _Flow:
    """A JSON value written in flow style (`{"a": [1, 2]}`): pinned values and enums."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Flow) and _flow(self.value) == _flow(other.value)

    def __hash__(self) -> int:
        return hash(_flow(self.value))


_PLAIN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.@/+-]*")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _quoted(text: str) -> str:
    """A double-quoted YAML scalar; anything invisible or unusual is escaped, so a reviewer
    sees every character (no hidden line separators or zero-width characters)."""
    out = ['"']
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
            continue
        code = ord(char)
        if (
            code < 0x20
            or 0x7F <= code < 0xA0
            or unicodedata.category(char) in ("Cf", "Cs", "Co", "Cn", "Zl", "Zp")
        ):
            if code <= 0xFF:
                out.append(f"\\x{code:02x}")
            elif code <= 0xFFFF:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


class _Regex(_Flow):
    """A regular expression: single-quoted when possible, so backslashes stay as written."""

    __slots__ = ()


def _regex(text: str) -> str:
    quoted = _quoted(text)
    if quoted.replace("\\\\", "").count("\\") or "\n" in text:
        return quoted  # something had to be escaped (besides backslashes): keep double quotes
    return "'" + text.replace("'", "''") + "'"


def _plain_or_quoted(text: str) -> str:
    if _PLAIN_RE.fullmatch(text) and resolves_to_string(text):
        return text
    return _quoted(text)


def _float(value: float) -> str:
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"  # YAML 1.1 (PyYAML) reads 1e+16 as a string, 1.0e+16 as a float
        text = f"{mantissa}e{exponent}"
    return text


def _flow(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return _quoted(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_quoted(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot export {type(value).__name__}")


def _scalar(value: Any) -> str:
    if isinstance(value, _Regex):
        return _regex(value.value)
    if isinstance(value, _Flow):
        return _flow(value.value)
    if isinstance(value, str):
        return _plain_or_quoted(value)
    return _flow(value)


def _emit_map(mapping: Mapping[str, Any], indent: int, out: list[str]) -> None:
    pad = " " * indent
    for key, value in mapping.items():
        head = f"{pad}{_plain_or_quoted(key)}:"
        if isinstance(value, dict):
            if not value:
                out.append(f"{head} {{}}")
            else:
                out.append(head)
                _emit_map(value, indent + 2, out)
        elif isinstance(value, list):
            if not value:
                out.append(f"{head} []")
            elif all(isinstance(v, dict) for v in value):
                out.append(head)
                for item in value:
                    lines: list[str] = []
                    _emit_map(item, indent + 4, lines)
                    lines[0] = f"{pad}  - {lines[0][indent + 4 :]}"
                    out.extend(lines)
            else:
                flow = "[" + ", ".join(_quoted(v) for v in value) + "]"
                if len(head) + 1 + len(flow) <= LINE_WIDTH:
                    out.append(f"{head} {flow}")
                else:
                    out.append(head)
                    out.extend(f"{pad}  - {_quoted(v)}" for v in value)
        else:
            out.append(f"{head} {_scalar(value)}")


def _rules_plain(rules: ToolRules) -> dict[str, Any]:
    plain: dict[str, Any] = {}
    if rules.tool_groups:
        plain["toolGroups"] = list(rules.tool_groups)
    if rules.servers:
        plain["servers"] = list(rules.servers)
    if rules.tools:
        plain["tools"] = list(rules.tools)
    return plain


def _argument_plain(rule: ArgumentRule) -> dict[str, Any]:
    plain: dict[str, Any] = {}
    if rule.pinned is not None:
        plain["pinned"] = _Flow(rule.pinned.value)
    if rule.enum is not None:
        plain["enum"] = _Flow(list(rule.enum))
    if rule.pattern is not None:
        plain["pattern"] = _Regex(rule.pattern)
    if rule.max_length is not None:
        plain["maxLength"] = rule.max_length
    if rule.minimum is not None:
        plain["minimum"] = rule.minimum
    if rule.maximum is not None:
        plain["maximum"] = rule.maximum
    if rule.required:
        plain["required"] = True
    return plain


def _policy_plain(spec: PolicySpec) -> dict[str, Any]:
    """The policy as ordered plain data in canonical key order (the basis of export and diff)."""
    plain: dict[str, Any] = {}
    if spec.name != spec.consumer:
        plain["name"] = spec.name
    if spec.description:
        plain["description"] = _Flow(spec.description)
    if not spec.enabled:
        plain["enabled"] = False
    if spec.consumer is not None:
        plain["consumer"] = spec.consumer
    subjects = {
        key: list(values)
        for key, values in (
            ("agents", spec.subjects.agents),
            ("teams", spec.subjects.teams),
            ("users", spec.subjects.users),
            ("agentTags", spec.subjects.agent_tags),
        )
        if values
    }
    if subjects:
        plain["subjects"] = subjects
    if not spec.allow.is_empty():
        plain["allow"] = _rules_plain(spec.allow)
    if not spec.deny.is_empty():
        plain["deny"] = _rules_plain(spec.deny)
    if spec.arguments:
        plain["arguments"] = {
            entry.tool: {rule.argument: _argument_plain(rule) for rule in entry.rules}
            for entry in spec.arguments
        }
    if spec.overrides:
        overrides = []
        for override in spec.overrides:
            item: dict[str, Any] = {"name": override.name, "tool": override.tool}
            if override.title is not None:
                item["title"] = _Flow(override.title)
            if override.description is not None:
                item["description"] = _Flow(override.description)
            if override.pin:
                item["pin"] = {arg: _Flow(value) for arg, value in override.pin.items()}
            overrides.append(item)
        plain["overrides"] = overrides
    if spec.outbound.allow_domains:
        plain["outbound"] = {"allowDomains": list(spec.outbound.allow_domains)}
    if not spec.limits.is_empty():
        limits: dict[str, Any] = {}
        if spec.limits.per_minute is not None:
            limits["rateLimitPerMinute"] = spec.limits.per_minute
        if spec.limits.per_day is not None:
            limits["rateLimitPerDay"] = spec.limits.per_day
        if spec.limits.per != "principal":
            limits["per"] = spec.limits.per
        if spec.limits.per_tool:
            per_tool = {}
            for entry in spec.limits.per_tool:
                values = {}
                if entry.per_minute is not None:
                    values["rateLimitPerMinute"] = entry.per_minute
                if entry.per_day is not None:
                    values["rateLimitPerDay"] = entry.per_day
                per_tool[entry.tool] = values
            limits["perTool"] = per_tool
        plain["limits"] = limits
    if not spec.redact.is_empty():
        redact: dict[str, Any] = {}
        if spec.redact.arguments:
            redact["arguments"] = list(spec.redact.arguments)
        if spec.redact.results:
            redact["results"] = list(spec.redact.results)
        plain["redact"] = redact
    return plain


def export_document(document: PolicyDocument) -> str:
    """Canonical YAML: fixed key order, stable quoting; `parse_document` reads it back equal.

    One policy without tool groups is written in the short form, anything else in the long
    form (`toolGroups:` then `policies:`).
    """
    out: list[str] = []
    if document.is_single_policy:
        _emit_map(_policy_plain(document.policies[0]), 0, out)
    else:
        top: dict[str, Any] = {}
        if document.tool_groups:
            top["toolGroups"] = {group.slug: list(group.tools) for group in document.tool_groups}
        top["policies"] = [_policy_plain(spec) for spec in document.policies]
        _emit_map(top, 0, out)
    return "\n".join(out) + "\n"


# =========================================================================== diff


def _flatten(value: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, location(path, key), out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for index, item in enumerate(value):
            _flatten(item, location(path, index), out)
    else:
        out[path] = value


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_quoted(v) for v in value)
    return _scalar(value)


def _diff_plain(subject: str, live: dict[str, Any], proposed: dict[str, Any]) -> list[str]:
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    _flatten(live, "", before)
    _flatten(proposed, "", after)
    lines = []
    for path in list(dict.fromkeys([*before, *after])):
        old, new = before.get(path), after.get(path)
        if path not in after:
            lines.append(f"- {subject}: {path}: {_show(old)} (removed)")
        elif path not in before:
            lines.append(f"+ {subject}: {path}: {_show(new)} (added)")
        elif isinstance(old, list) and isinstance(new, list):
            added = [v for v in new if v not in old]
            removed = [v for v in old if v not in new]
            for value in removed:
                lines.append(f"- {subject}: {path}: {_quoted(value)}")
            for value in added:
                lines.append(f"+ {subject}: {path}: {_quoted(value)}")
            if not added and not removed and old != new:
                lines.append(f"~ {subject}: {path}: reordered")
        elif old != new or type(old) is not type(new):
            lines.append(f"~ {subject}: {path}: {_show(old)} -> {_show(new)}")
    return lines


def diff_documents(live: PolicyDocument, proposed: PolicyDocument) -> list[str]:
    """What changes from `live` to `proposed`, one readable line per change.

    `+` added, `-` removed, `~` changed; policies and groups are matched by name.
    """
    lines: list[str] = []
    live_groups = {g.slug: list(g.tools) for g in live.tool_groups}
    new_groups = {g.slug: list(g.tools) for g in proposed.tool_groups}
    for slug in dict.fromkeys([*live_groups, *new_groups]):
        if slug not in new_groups:
            lines.append(f"- tool group '{slug}' removed")
        elif slug not in live_groups:
            lines.append(f"+ tool group '{slug}' added: {_show(new_groups[slug])}")
        else:
            lines += _diff_plain(
                f"tool group '{slug}'", {"tools": live_groups[slug]}, {"tools": new_groups[slug]}
            )
    live_policies = {p.name: p for p in live.policies}
    new_policies = {p.name: p for p in proposed.policies}
    for name in dict.fromkeys([*live_policies, *new_policies]):
        if name not in new_policies:
            lines.append(f"- policy '{name}' removed")
        elif name not in live_policies:
            lines.append(f"+ policy '{name}' added")
            lines += [
                f"+ policy '{name}': {path}: {_show(value)}"
                for path, value in _flat(_policy_plain(new_policies[name])).items()
            ]
        else:
            old, new = live_policies[name], new_policies[name]
            if old.enabled != new.enabled:
                lines.append(
                    f"~ policy '{name}': {'enabled' if old.enabled else 'disabled'} -> "
                    f"{'enabled' if new.enabled else 'disabled'}"
                )
            before, after = _policy_plain(old), _policy_plain(new)
            before.pop("enabled", None)
            after.pop("enabled", None)
            lines += _diff_plain(f"policy '{name}'", before, after)
    return lines


def text_diff(before: str, after: str, *, context: int = 3) -> list[tuple[str, str]]:
    """A line diff of two YAML texts for display: `(kind, line)` pairs, kind one of `add`,
    `del`, `same` or `gap` (a `@@ ... @@` hunk header). Empty when the texts are equal."""
    lines: list[tuple[str, str]] = []
    diff = difflib.unified_diff(
        before.splitlines(), after.splitlines(), "live", "edited", lineterm="", n=context
    )
    for line in diff:
        if line.startswith(("--- ", "+++ ")) and not lines:
            continue  # the two file headers
        if line.startswith("@@"):
            lines.append(("gap", line))
        elif line.startswith("+"):
            lines.append(("add", line))
        elif line.startswith("-"):
            lines.append(("del", line))
        else:
            lines.append(("same", line))
    return lines


def _flat(plain: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _flatten(plain, "", out)
    return out


# =========================================================================== JSON mappings


def _unflow(value: Any) -> Any:
    if isinstance(value, _Flow):
        return value.value
    if isinstance(value, dict):
        return {key: _unflow(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unflow(item) for item in value]
    return value


def policy_to_mapping(spec: PolicySpec) -> dict[str, Any]:
    """The policy as a JSON-ready mapping in the YAML vocabulary, e.g. for a JSON column.

    It is what `export_document` writes for a one-policy document, loaded as data;
    `policy_from_mapping` reads it back equal.
    """
    return _unflow(_policy_plain(spec))


def policy_from_mapping(data: Mapping[str, Any]) -> PolicySpec:
    """Read one policy from a mapping (stored JSON, an API body) with the checks of
    `parse_document`; raise PolicyDocumentError listing every problem."""
    try:
        node = from_json(dict(data) if isinstance(data, Mapping) else data)
    except Refused as exc:
        raise PolicyDocumentError([ValidationError("", exc.message)]) from None
    reader = _Reader()
    spec = reader.policy(node, "")
    problems = list(reader.errors)
    seen = {p.location for p in problems}
    problems += [p for p in check_policy(spec) if p.location not in seen]
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise PolicyDocumentError(errors)
    return spec
