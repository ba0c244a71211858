"""Definition scanners: flag, for the reviewer, what a tool definition may hide.

Each scanner takes the fetched tools and a ScanContext and returns findings (plain dicts):
`{"scanner", "severity": "high"|"medium"|"low", "tool", "field", "message", "evidence"}`.
They flag; they do not decide. A high-severity finding must be acknowledged by the approver.
"""

import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from catalog.definitions import ToolDefinition

HIGH, MEDIUM, LOW = "high", "medium", "low"
SEVERITY_ORDER = {HIGH: 0, MEDIUM: 1, LOW: 2}


@dataclass(frozen=True)
class ScanContext:
    server_slug: str
    egress_hosts: tuple[str, ...] = ()
    # tool name -> slugs of *other* approved servers in the org that expose it
    other_tools: dict[str, list[str]] = field(default_factory=dict)


def _finding(
    scanner: str, severity: str, tool: str, field_name: str, message: str, evidence: str = ""
) -> dict[str, Any]:
    return {
        "scanner": scanner,
        "severity": severity,
        "tool": tool,
        "field": field_name,
        "message": message,
        "evidence": evidence[:200],
    }


def _texts(tool: ToolDefinition) -> Iterator[tuple[str, str]]:
    """Every human/model-readable string of a definition, with where it sits."""
    yield "name", tool.name
    yield "title", tool.title
    yield "description", tool.description

    def walk(node: Any, path: str) -> Iterator[tuple[str, str]]:
        if isinstance(node, dict):
            for key, value in node.items():
                sub = f"{path}.{key}"
                if isinstance(value, str) and key in ("description", "title", "default", "const"):
                    yield sub, value
                elif isinstance(value, list) and key == "enum":
                    for item in value:
                        if isinstance(item, str):
                            yield sub, item
                yield from walk(value, sub)
        elif isinstance(node, list):
            for index, item in enumerate(node):
                yield from walk(item, f"{path}[{index}]")

    yield from walk(tool.input_schema, "inputSchema")
    if tool.output_schema:
        yield from walk(tool.output_schema, "outputSchema")
    if tool.annotations:
        for key, value in tool.annotations.items():
            if isinstance(value, str):
                yield f"annotations.{key}", value


# --- Hidden instructions ---------------------------------------------------------------------

_INSTRUCTION_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(
            r"\bignore\b.{0,30}\b(previous|prior|above|earlier|all)\b.{0,30}\b(instructions?|prompts?|rules?|messages?)",
            re.I | re.S,
        ),
        "asks the model to ignore its instructions",
    ),
    (
        re.compile(r"<\s*/?\s*(important|system|instructions?|secret|hidden)\s*>", re.I),
        "contains an instruction tag the user does not see",
    ),
    (
        re.compile(
            r"\b(do not|don't|never)\b.{0,30}\b(tell|mention|inform|reveal|show|notify)\b.{0,30}\buser\b",
            re.I | re.S,
        ),
        "asks the model to hide something from the user",
    ),
    (
        re.compile(
            r"(~/\.ssh|id_rsa|\.aws/credentials|/etc/(passwd|shadow)|\.env\b|\.netrc|\.git-credentials|mcp\.json|private[ _]key)",
            re.I,
        ),
        "refers to files holding credentials",
    ),
    (
        re.compile(
            r"\b(read|open|cat|load|include)\b.{0,40}\b(file|contents?)\b.{0,40}\b(and|then)\b.{0,40}\b(send|pass|post|upload|include|forward)",
            re.I | re.S,
        ),
        "asks the model to read files and pass them on",
    ),
    (
        re.compile(
            r"\b(send|forward|post|upload|exfiltrate|copy)\b.{0,60}\b(to|at)\b.{0,20}(https?://|[\w.-]+@[\w-]+\.\w+)",
            re.I | re.S,
        ),
        "asks the model to send data elsewhere",
    ),
    (
        re.compile(r"\bbefore (using|calling) (this|any other) tool\b", re.I),
        "tells the model what to do before using tools",
    ),
    (
        re.compile(
            r"\b(you must|you are required to|always)\b.{0,40}\b(call|use|invoke|run)\b.{0,40}\btool\b",
            re.I | re.S,
        ),
        "directs the model to call other tools",
    ),
]


def scan_hidden_instructions(tools: list[ToolDefinition], ctx: ScanContext) -> list[dict[str, Any]]:
    findings = []
    for tool in tools:
        for where, text in _texts(tool):
            for pattern, why in _INSTRUCTION_PATTERNS:
                match = pattern.search(text)
                if match:
                    findings.append(
                        _finding(
                            "hidden_instructions",
                            HIGH,
                            tool.name,
                            where,
                            f"The {where} {why}: a classic tool-poisoning sign.",
                            match.group(0),
                        )
                    )
                    break
    return findings


# --- Invisible and bidirectional Unicode ----------------------------------------------------

_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def _suspicious_char(char: str) -> bool:
    code = ord(char)
    if char in _BIDI or 0xE0000 <= code <= 0xE007F:  # bidi controls, Unicode tag characters
        return True
    if char in "\n\r\t":
        return False
    category = unicodedata.category(char)
    return category in ("Cf", "Co", "Cn") or (category == "Cc")


def scan_invisible_unicode(tools: list[ToolDefinition], ctx: ScanContext) -> list[dict[str, Any]]:
    findings = []
    for tool in tools:
        for where, text in _texts(tool):
            hidden = [c for c in text if _suspicious_char(c)]
            if hidden:
                names = sorted({f"U+{ord(c):04X}" for c in hidden})[:6]
                findings.append(
                    _finding(
                        "invisible_unicode",
                        HIGH,
                        tool.name,
                        where,
                        f"The {where} contains {len(hidden)} invisible or text-direction "
                        "characters: what the reviewer reads may differ from what the model reads.",
                        ", ".join(names),
                    )
                )
    return findings


# --- Shadowing --------------------------------------------------------------------------------


def scan_shadowing(tools: list[ToolDefinition], ctx: ScanContext) -> list[dict[str, Any]]:
    findings = []
    for tool in tools:
        others = ctx.other_tools.get(tool.name) or ctx.other_tools.get(tool.name.lower())
        if others:
            findings.append(
                _finding(
                    "shadowing",
                    MEDIUM,
                    tool.name,
                    "name",
                    f"The tool name {tool.name!r} is also a tool of approved server(s) "
                    f"{', '.join(sorted(others))}: a model may call the wrong one.",
                    tool.name,
                )
            )
        for where, text in _texts(tool):
            if where == "name":
                continue
            for other_name, slugs in ctx.other_tools.items():
                for slug in slugs:
                    qualified = f"{slug}.{other_name}"
                    if qualified in text:
                        findings.append(
                            _finding(
                                "shadowing",
                                HIGH,
                                tool.name,
                                where,
                                f"The {where} mentions another server's tool {qualified}: it may "
                                "try to change how the model uses that tool.",
                                qualified,
                            )
                        )
                        break
    return findings


# --- Over-broad schemas ---------------------------------------------------------------------

_DANGEROUS_PARAMS = {
    HIGH: re.compile(
        r"^(command|cmd|shell|script|code|exec|eval|sql|query_sql|raw_sql|statement)$", re.I
    ),
    MEDIUM: re.compile(
        r"^(url|uri|endpoint|path|file|filename|filepath|query|expression|regex|template)$", re.I
    ),
}


def _constrained(schema: dict[str, Any]) -> bool:
    return any(k in schema for k in ("enum", "const", "pattern", "format", "maxLength"))


def scan_open_schemas(tools: list[ToolDefinition], ctx: ScanContext) -> list[dict[str, Any]]:
    findings = []
    for tool in tools:
        schema = tool.input_schema
        props = schema.get("properties")
        if not props and schema.get("additionalProperties", True) is not False:
            if (
                schema.get("additionalProperties") not in (None, False)
                or "patternProperties" in schema
            ):
                findings.append(
                    _finding(
                        "open_schema",
                        MEDIUM,
                        tool.name,
                        "inputSchema",
                        "The input schema accepts any arguments (no properties, additional "
                        "properties allowed): arguments cannot be checked.",
                    )
                )
            continue
        if not isinstance(props, dict):
            continue
        for name, prop in props.items():
            if not isinstance(prop, dict):
                continue
            types = prop.get("type")
            is_string = types == "string" or (isinstance(types, list) and "string" in types)
            if not is_string or _constrained(prop):
                continue
            for severity, pattern in _DANGEROUS_PARAMS.items():
                if pattern.match(name):
                    findings.append(
                        _finding(
                            "open_schema",
                            severity,
                            tool.name,
                            f"inputSchema.properties.{name}",
                            f"The parameter {name!r} is a free-form string with no enum, pattern "
                            "or format: it can carry any command, query or address. Consider a "
                            "policy argument rule for it.",
                            name,
                        )
                    )
                    break
    return findings


# --- Egress -----------------------------------------------------------------------------------

_URL_RE = re.compile(r"\b(?:https?|wss?|ftp)://[^\s\"'<>)\]]+", re.I)


def _host_declared(host: str, egress: Iterable[str]) -> bool:
    from catalog.upstream import host_allowed

    return host_allowed(host, egress)


def scan_egress(tools: list[ToolDefinition], ctx: ScanContext) -> list[dict[str, Any]]:
    findings = []
    for tool in tools:
        for where, text in _texts(tool):
            for url in _URL_RE.findall(text):
                try:
                    host = urlsplit(url).hostname or ""
                except ValueError:
                    host = ""
                if host and not _host_declared(host, ctx.egress_hosts):
                    findings.append(
                        _finding(
                            "egress",
                            MEDIUM,
                            tool.name,
                            where,
                            f"The {where} names the host {host}, which is not among the server's "
                            "declared egress hosts.",
                            url,
                        )
                    )
    return findings


SCANNERS: list[Callable[[list[ToolDefinition], ScanContext], list[dict[str, Any]]]] = [
    scan_hidden_instructions,
    scan_invisible_unicode,
    scan_shadowing,
    scan_open_schemas,
    scan_egress,
]


def scan(tools: list[ToolDefinition], ctx: ScanContext) -> list[dict[str, Any]]:
    """All findings, most severe first, at most a few per tool and scanner."""
    findings: list[dict[str, Any]] = []
    for scanner in SCANNERS:
        findings.extend(scanner(tools, ctx))
    findings.sort(key=lambda f: (SEVERITY_ORDER[f["severity"]], f["tool"], f["scanner"]))
    return findings[:500]
