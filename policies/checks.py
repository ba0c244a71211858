"""Structural checks of policy specs: everything that can be wrong without looking at a catalog.

Used by `parse_document` (after reading the YAML), by `validate_document` (specs may also be
built in code, e.g. from a form) and by `compile` (which refuses an invalid spec: dropping one
policy could silently drop a deny). Locations use the YAML names: `arguments["chat.post"].x`.
"""

from __future__ import annotations

import math
import re
from typing import Any

from policies.argrules import (
    MAX_ENUM_VALUES,
    ArgumentCheck,
    is_json_scalar,
    json_key,
    regex_problem,
)
from policies.errors import ValidationError
from policies.patterns import (
    EMAIL_RE,
    POLICY_NAME_RE,
    SERVER_SLUG_RE,
    SLUG_RE,
    TAG_RE,
    TOOL_NAME_RE,
    ToolRefError,
    parse_tool_ref,
    split_exposed_name,
)
from policies.types import (
    ArgumentRule,
    PolicyDocument,
    PolicySpec,
    ToolGroupSpec,
    ToolRules,
)

MAX_DESCRIPTION = 10_000
MAX_TITLE = 200
MAX_LIST_ITEMS = 5_000
MAX_RATE = 1_000_000_000
MAX_JSON_DEPTH = 10
ARGUMENT_NAME_RE = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
DOMAIN_RE = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*(:[0-9]{{1,5}})?")
FIELD_PATH_RE = re.compile(r"(\*|[A-Za-z0-9_$@-]{1,100})(\.(\*|[A-Za-z0-9_$@-]{1,100})){0,19}")
_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def location(prefix: str, *segments: str | int) -> str:
    """Join a path: `location("policies[0]", "deny", "tools", 1)` -> `policies[0].deny.tools[1]`.

    Keys that are not plain identifiers are quoted: `arguments["chat.post_message"]`.
    """
    text = prefix
    for segment in segments:
        if isinstance(segment, int):
            text += f"[{segment}]"
        elif _KEY_RE.fullmatch(segment):
            text += f".{segment}" if text else segment
        else:
            text += '["' + segment.replace("\\", "\\\\").replace('"', '\\"') + '"]'
    return text


class _Errors:
    def __init__(self) -> None:
        self.items: list[ValidationError] = []

    def add(self, where: str, message: str, severity: str = "error") -> None:
        self.items.append(ValidationError(where, message, severity))  # type: ignore[arg-type]


def _check_strings(
    errors: _Errors,
    where: str,
    values: Any,
    check: Any,
    what: str,
) -> None:
    """A list of strings, each passing `check(value) -> problem | None`, without duplicates."""
    if not isinstance(values, tuple | list):
        errors.add(where, f"must be a list of {what}")
        return
    if len(values) > MAX_LIST_ITEMS:
        errors.add(where, f"has more than {MAX_LIST_ITEMS} entries")
        return
    seen: dict[str, int] = {}
    for index, value in enumerate(values):
        item = location(where, index)
        if not isinstance(value, str):
            errors.add(item, f"must be a string ({what}), not {type_name(value)}")
            continue
        problem = check(value)
        if problem:
            errors.add(item, problem)
        elif value in seen:
            errors.add(item, f"'{value}' is listed twice (also at [{seen[value]}])")
        seen.setdefault(value, index)


def type_name(value: Any) -> str:
    """`a string`, `a number`, ... for messages about wrong types."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def slug_problem(value: str) -> str | None:
    if SLUG_RE.fullmatch(value):
        return None
    return f"'{value}' is not a valid slug (letters, digits, '-' and '_'; up to 100)"


def server_problem(value: str) -> str | None:
    if SERVER_SLUG_RE.fullmatch(value):
        return None
    return f"'{value}' is not a valid server slug (letters, digits, '-' and '_'; no dots)"


def tool_ref_problem(value: str) -> str | None:
    try:
        parse_tool_ref(value)
    except ToolRefError as exc:
        return str(exc)
    return None


def exact_tool_ref_problem(value: str) -> str | None:
    problem = tool_ref_problem(value)
    if problem is None and not parse_tool_ref(value).is_exact:
        problem = f"'{value}' must name one tool; patterns with '*' are not allowed here"
    return problem


def domain_problem(value: str) -> str | None:
    if "://" in value or "/" in value:
        return f"'{value}' must be a host name like 'api.example.com', not a URL"
    if len(value) > 253 or not DOMAIN_RE.fullmatch(value):
        return (
            f"'{value}' is not a valid host name (labels of letters, digits and '-', "
            "optionally '*.' in front and ':port' at the end)"
        )
    _host, _, port = value.partition(":")
    if port and not 1 <= int(port) <= 65535:
        return f"'{value}': the port must be between 1 and 65535"
    return None


def field_path_problem(value: str) -> str | None:
    if FIELD_PATH_RE.fullmatch(value):
        return None
    return (
        f"'{value}' is not a field path (names separated by dots, '*' for any key, "
        "e.g. 'user.email' or 'items.*.token')"
    )


def json_problem(value: Any, depth: int = 0) -> str | None:
    """Why `value` is not a plain JSON value (or is nested too deep), or None."""
    if depth > MAX_JSON_DEPTH:
        return f"is nested deeper than {MAX_JSON_DEPTH} levels"
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if is_json_scalar(value):
        return None
    if isinstance(value, list | tuple):
        return next((p for v in value if (p := json_problem(v, depth + 1))), None)
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            return "must only have string keys"
        return next((p for v in value.values() if (p := json_problem(v, depth + 1))), None)
    return f"must be a JSON value (string, number, boolean, null, list, mapping), not {type_name(value)}"


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_RATE


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# --------------------------------------------------------------------------- sections


def _check_tool_rules(errors: _Errors, where: str, rules: ToolRules) -> None:
    _check_strings(
        errors, location(where, "toolGroups"), rules.tool_groups, slug_problem, "group slugs"
    )
    _check_strings(
        errors, location(where, "servers"), rules.servers, server_problem, "server slugs"
    )
    _check_strings(
        errors, location(where, "tools"), rules.tools, tool_ref_problem, "tool references"
    )


def _check_argument_rule(errors: _Errors, where: str, rule: ArgumentRule, policy: str) -> None:
    before = len(errors.items)
    if not isinstance(rule.argument, str) or not ARGUMENT_NAME_RE.fullmatch(rule.argument):
        errors.add(where, "the argument name must be 1-128 printable characters")
        return
    if rule.pinned is None and not rule.has_constraints():
        errors.add(
            where,
            "has no rule: use pinned, enum, pattern, maxLength, minimum, maximum or required",
        )
    if rule.pinned is not None and (problem := json_problem(rule.pinned.value)):
        errors.add(location(where, "pinned"), f"the pinned value {problem}")
    if rule.enum is not None:
        _check_enum(errors, location(where, "enum"), rule.enum)
    if rule.pattern is not None:
        if not isinstance(rule.pattern, str):
            errors.add(location(where, "pattern"), "must be a string (a regular expression)")
        elif problem := regex_problem(rule.pattern):
            errors.add(location(where, "pattern"), f"the pattern {problem}")
    if rule.max_length is not None and (
        not isinstance(rule.max_length, int)
        or isinstance(rule.max_length, bool)
        or rule.max_length < 0
    ):
        errors.add(location(where, "maxLength"), "must be a whole number, 0 or more")
    for key, value in (("minimum", rule.minimum), ("maximum", rule.maximum)):
        if value is not None and not _is_number(value):
            errors.add(location(where, key), "must be a finite number")
    if (
        _is_number(rule.minimum) and _is_number(rule.maximum) and rule.minimum > rule.maximum  # type: ignore[operator]
    ):
        errors.add(location(where, "minimum"), f"is greater than maximum ({rule.maximum})")
    if not isinstance(rule.required, bool):
        errors.add(location(where, "required"), "must be true or false")
    if rule.pinned is not None and len(errors.items) == before:
        # A pin that breaks its own rule would make every call fail: say so now.
        check = ArgumentCheck(rule, policy=policy, rule_id="", location="")
        for failure in check.check({rule.argument: rule.pinned.value}):
            errors.add(
                location(where, "pinned"), f"the pinned value breaks this rule: {failure.message}"
            )


def _check_enum(errors: _Errors, where: str, values: Any) -> None:
    if not isinstance(values, tuple | list) or not values:
        errors.add(where, "must be a non-empty list of allowed values")
        return
    if len(values) > MAX_ENUM_VALUES:
        errors.add(where, f"has more than {MAX_ENUM_VALUES} values")
        return
    seen: set[Any] = set()
    for index, value in enumerate(values):
        if not is_json_scalar(value) or (isinstance(value, float) and not math.isfinite(value)):
            errors.add(location(where, index), "must be a string, number, boolean or null")
            continue
        key = json_key(value)
        if key in seen:
            errors.add(location(where, index), f"{value!r} is listed twice")
        seen.add(key)


def _check_arguments(errors: _Errors, prefix: str, spec: PolicySpec) -> None:
    seen_tools: dict[tuple[str, str], str] = {}
    for entry in spec.arguments:
        where = location(prefix, "arguments", entry.tool)
        if problem := tool_ref_problem(entry.tool):
            errors.add(where, problem)
            continue
        ref = parse_tool_ref(entry.tool)
        key = (ref.server, ref.tool)
        if key in seen_tools:
            errors.add(where, f"names the same tools as '{seen_tools[key]}'; merge the two")
        seen_tools.setdefault(key, entry.tool)
        if not entry.rules:
            errors.add(where, "lists no argument")
        seen_args: set[str] = set()
        for rule in entry.rules:
            if rule.argument in seen_args:
                errors.add(location(where, str(rule.argument)), "is listed twice")
            seen_args.add(rule.argument)
            _check_argument_rule(errors, location(where, str(rule.argument)), rule, spec.name)


def _check_overrides(errors: _Errors, prefix: str, spec: PolicySpec) -> None:
    seen: dict[str, int] = {}
    for index, override in enumerate(spec.overrides):
        where = location(prefix, "overrides", index)
        name_ok = isinstance(override.name, str) and split_exposed_name(override.name) is not None
        if name_ok:
            server, tool = split_exposed_name(override.name)  # type: ignore[misc]
            name_ok = bool(SERVER_SLUG_RE.fullmatch(server) and TOOL_NAME_RE.fullmatch(tool))
        if not name_ok:
            errors.add(
                location(where, "name"),
                f"'{override.name}' must be an exposed name like 'server.new_name' "
                "(letters, digits, '_', '-', '.')",
            )
        elif override.name in seen:
            errors.add(
                location(where, "name"),
                f"'{override.name}' is defined twice (also at overrides[{seen[override.name]}])",
            )
        else:
            seen[override.name] = index
        if (
            problem := exact_tool_ref_problem(override.tool)
            if isinstance(override.tool, str)
            else "must be a tool reference"
        ):
            errors.add(location(where, "tool"), problem)
        elif name_ok:
            target = parse_tool_ref(override.tool)
            if split_exposed_name(override.name)[0] != target.server:  # type: ignore[index]
                errors.add(
                    location(where, "name"),
                    f"must start with the server of its tool ('{target.server}.'), so that a "
                    "variant never poses as another server's tool",
                )
            elif override.name == target.exposed_name:
                errors.add(location(where, "name"), "is the tool's own name; choose a new name")
        for key, limit in (("title", MAX_TITLE), ("description", MAX_DESCRIPTION)):
            value = getattr(override, key)
            if value is not None and (not isinstance(value, str) or len(value) > limit):
                errors.add(location(where, key), f"must be a string of at most {limit} characters")
        if not isinstance(override.pin, dict):
            errors.add(location(where, "pin"), "must be a mapping of argument to value")
            continue
        for argument, value in override.pin.items():
            if not isinstance(argument, str) or not ARGUMENT_NAME_RE.fullmatch(argument):
                errors.add(
                    location(where, "pin"), "argument names must be 1-128 printable characters"
                )
            elif problem := json_problem(value):
                errors.add(location(where, "pin", argument), f"the pinned value {problem}")


def _check_limits(errors: _Errors, prefix: str, spec: PolicySpec) -> None:
    limits = spec.limits
    where = location(prefix, "limits")
    for key, value in (
        ("rateLimitPerMinute", limits.per_minute),
        ("rateLimitPerDay", limits.per_day),
    ):
        if value is not None and not _is_positive_int(value):
            errors.add(location(where, key), f"must be a whole number from 1 to {MAX_RATE}")
    if limits.per not in ("principal", "organization"):
        errors.add(location(where, "per"), "must be 'principal' or 'organization'")
    seen: set[tuple[str, str]] = set()
    for entry in limits.per_tool:
        item = location(where, "perTool", entry.tool)
        if problem := tool_ref_problem(entry.tool):
            errors.add(item, problem)
            continue
        ref = parse_tool_ref(entry.tool)
        if (ref.server, ref.tool) in seen:
            errors.add(item, "names the same tools as another perTool entry")
        seen.add((ref.server, ref.tool))
        if entry.per_minute is None and entry.per_day is None:
            errors.add(item, "needs rateLimitPerMinute or rateLimitPerDay")
        for key, value in (
            ("rateLimitPerMinute", entry.per_minute),
            ("rateLimitPerDay", entry.per_day),
        ):
            if value is not None and not _is_positive_int(value):
                errors.add(location(item, key), f"must be a whole number from 1 to {MAX_RATE}")


def check_policy(spec: PolicySpec, *, prefix: str = "") -> list[ValidationError]:
    """Every structural problem of one policy spec (no catalog needed)."""
    errors = _Errors()
    if not isinstance(spec.name, str) or not POLICY_NAME_RE.fullmatch(spec.name):
        errors.add(
            location(prefix, "name"),
            "a policy needs a name of letters, digits, '-', '_' and '.' (up to 100), "
            "or a consumer to take its name from",
        )
    if not isinstance(spec.description, str) or len(spec.description) > MAX_DESCRIPTION:
        errors.add(
            location(prefix, "description"),
            f"must be a string of at most {MAX_DESCRIPTION} characters",
        )
    if spec.consumer is not None and (
        not isinstance(spec.consumer, str) or slug_problem(spec.consumer)
    ):
        errors.add(location(prefix, "consumer"), f"'{spec.consumer}' is not a valid agent slug")
    subjects = spec.subjects
    where = location(prefix, "subjects")
    _check_strings(
        errors,
        location(where, "agents"),
        subjects.agents,
        lambda v: None if v == "*" else slug_problem(v),
        "agent slugs ('*' for every agent)",
    )
    _check_strings(errors, location(where, "teams"), subjects.teams, slug_problem, "team slugs")
    _check_strings(
        errors,
        location(where, "users"),
        subjects.users,
        lambda v: None if EMAIL_RE.fullmatch(v) else f"'{v}' is not an email address",
        "user emails",
    )
    _check_strings(
        errors,
        location(where, "agentTags"),
        subjects.agent_tags,
        lambda v: None if TAG_RE.fullmatch(v) else f"'{v}' is not a valid tag",
        "agent tags",
    )
    if spec.consumer is None and subjects.is_empty():
        errors.add(
            where,
            "the policy applies to nobody: set consumer, or subjects.agents / teams / users / "
            "agentTags (agents: ['*'] means every agent)",
        )
    _check_tool_rules(errors, location(prefix, "allow"), spec.allow)
    _check_tool_rules(errors, location(prefix, "deny"), spec.deny)
    _check_arguments(errors, prefix, spec)
    _check_overrides(errors, prefix, spec)
    _check_strings(
        errors,
        location(prefix, "outbound", "allowDomains"),
        spec.outbound.allow_domains,
        domain_problem,
        "host names",
    )
    _check_limits(errors, prefix, spec)
    _check_strings(
        errors,
        location(prefix, "redact", "arguments"),
        spec.redact.arguments,
        field_path_problem,
        "field paths",
    )
    _check_strings(
        errors,
        location(prefix, "redact", "results"),
        spec.redact.results,
        field_path_problem,
        "field paths",
    )
    return errors.items


def check_tool_group(group: ToolGroupSpec, *, where: str) -> list[ValidationError]:
    errors = _Errors()
    if not isinstance(group.slug, str) or slug_problem(group.slug):
        errors.add(where, f"'{group.slug}' is not a valid group slug")
    _check_strings(errors, where, group.tools, tool_ref_problem, "tool references")
    return errors.items


def policy_prefix(document: PolicyDocument, index: int, long_form: bool | None = None) -> str:
    """`policies[3]`, or "" for the one-policy short form (the form export would write,
    unless `long_form` says how the text was actually written)."""
    if long_form is None:
        long_form = not document.is_single_policy
    return f"policies[{index}]" if long_form else ""


def check_document(
    document: PolicyDocument, *, long_form: bool | None = None
) -> list[ValidationError]:
    """Structural problems of a whole document: each policy, each group, unique names."""
    problems: list[ValidationError] = []
    seen_groups: set[str] = set()
    for group in document.tool_groups:
        where = location("toolGroups", group.slug) if isinstance(group.slug, str) else "toolGroups"
        problems += check_tool_group(group, where=where)
        if group.slug in seen_groups:
            problems.append(ValidationError(where, "is defined twice"))
        seen_groups.add(group.slug)
    seen_names: dict[str, int] = {}
    for index, spec in enumerate(document.policies):
        prefix = policy_prefix(document, index, long_form)
        problems += check_policy(spec, prefix=prefix)
        if spec.name in seen_names:
            problems.append(
                ValidationError(
                    location(prefix, "name"),
                    f"'{spec.name}' is also the name of policies[{seen_names[spec.name]}]; "
                    "names must be unique",
                )
            )
        seen_names.setdefault(spec.name, index)
    return problems
