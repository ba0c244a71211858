"""Argument rules: checks that run on every call, compiled once.

Regex patterns are matched with `fullmatch`, compiled at policy compile time, and guarded
against catastrophic backtracking by limits rather than timeouts (Python's `re` has none):
a pattern is at most `MAX_REGEX_LENGTH` characters, may not nest a variable-length quantifier
inside another (`(a+)+`, the classic exponential case) nor use back-references, and a value is
only matched when it is at most `MAX_MATCH_INPUT` characters long (longer values are refused).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from re import _parser as sre_parse  # the stdlib regex parser; stable from 3.11 on
from typing import Any

from policies.types import ArgumentRule, JSONValue

MAX_REGEX_LENGTH = 256
MAX_MATCH_INPUT = 4096
MAX_ENUM_VALUES = 1000

_REPEATS = {sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT, sre_parse.POSSESSIVE_REPEAT}


def regex_problem(pattern: str) -> str | None:
    """Why `pattern` is refused (a sentence), or None when it is acceptable."""
    if len(pattern) > MAX_REGEX_LENGTH:
        return f"is longer than {MAX_REGEX_LENGTH} characters"
    try:
        tree = sre_parse.parse(pattern)
    except re.error as exc:
        return f"is not a valid regular expression ({exc})"
    problem = _tree_problem(tree, inside_repeat=False)
    if problem:
        return problem
    return None


def _tree_problem(subpattern: Any, *, inside_repeat: bool) -> str | None:
    for op, av in subpattern.data if hasattr(subpattern, "data") else subpattern:
        if op in (sre_parse.GROUPREF, sre_parse.GROUPREF_EXISTS):
            return "uses a back-reference, which can take exponential time; remove it"
        if op in _REPEATS:
            low, high, child = av
            variable = high != low
            if inside_repeat and variable and op != sre_parse.POSSESSIVE_REPEAT:
                return (
                    "nests a repeated pattern inside another one (like '(a+)+'), which can "
                    "take exponential time; rewrite it without a repeated group that "
                    "contains '+', '*' or '{m,n}'"
                )
            problem = _tree_problem(child, inside_repeat=inside_repeat or high > 1)
        elif op == sre_parse.SUBPATTERN:
            problem = _tree_problem(av[3], inside_repeat=inside_repeat)
        elif op == sre_parse.ATOMIC_GROUP:
            problem = _tree_problem(av, inside_repeat=inside_repeat)
        elif op == sre_parse.BRANCH:
            problem = next(
                (p for b in av[1] if (p := _tree_problem(b, inside_repeat=inside_repeat))), None
            )
        elif op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT):
            problem = _tree_problem(av[1], inside_repeat=inside_repeat)
        else:
            problem = None
        if problem:
            return problem
    return None


# --------------------------------------------------------------------------- JSON values


def is_json_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | bool | int | float)


def json_key(value: Any) -> tuple[str, Any] | None:
    """A hashable key with JSON equality: `true` differs from `1`, `1` equals `1.0`."""
    if value is None:
        return ("null", None)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    return None


def json_equal(left: Any, right: Any) -> bool:
    """Equality of JSON values that does not confuse booleans with numbers."""
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(
            json_equal(a, b) for a, b in zip(left, right, strict=True)
        )
    left_key, right_key = json_key(left), json_key(right)
    return left_key is not None and left_key == right_key


def display_value(value: Any, limit: int = 60) -> str:
    """A short rendering for reasons: strings in single quotes, other values as JSON."""
    if isinstance(value, str):
        text = value if len(value) <= limit else value[: limit - 1] + "…"
        return "'" + text.replace("\n", "\\n") + "'"
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --------------------------------------------------------------------------- compiled checks


@dataclass(frozen=True, slots=True)
class Failure:
    """One argument rule that did not hold: which rule, and a sentence for the approver."""

    rule_id: str
    location: str
    policy: str
    message: str


class ArgumentCheck:
    """The constraints of one `ArgumentRule` (pins are merged before checks run)."""

    __slots__ = (
        "argument",
        "enum_display",
        "enum_keys",
        "location",
        "max_length",
        "maximum",
        "minimum",
        "pattern",
        "policy",
        "regex",
        "required",
        "rule_id",
    )

    def __init__(self, rule: ArgumentRule, *, policy: str, rule_id: str, location: str) -> None:
        self.argument = rule.argument
        self.policy = policy
        self.rule_id = rule_id  # e.g. policy:x/arguments/chat.post_message/channel
        self.location = location  # e.g. arguments["chat.post_message"].channel
        self.required = rule.required
        self.enum_keys: frozenset[tuple[str, Any]] | None = None
        self.enum_display = ""
        if rule.enum is not None:
            self.enum_keys = frozenset(k for v in rule.enum if (k := json_key(v)) is not None)
            shown = [display_value(v) for v in rule.enum[:10]]
            more = f" (and {len(rule.enum) - 10} more)" if len(rule.enum) > 10 else ""
            self.enum_display = ", ".join(shown) + more
        self.pattern = rule.pattern
        # Callers validate patterns first (checks.py); compiling here fails loudly if not.
        self.regex = re.compile(rule.pattern) if rule.pattern is not None else None
        self.max_length = rule.max_length
        self.minimum = rule.minimum
        self.maximum = rule.maximum

    def check(self, arguments: dict[str, JSONValue]) -> list[Failure]:
        if self.argument not in arguments:
            if self.required:
                return [self._fail("required", f"argument '{self.argument}' is required")]
            return []
        value = arguments[self.argument]
        failures: list[Failure] = []
        name = f"argument '{self.argument}'"
        if self.enum_keys is not None and json_key(value) not in self.enum_keys:
            failures.append(self._fail("enum", f"{name} must be one of {self.enum_display}"))
        if self.max_length is not None:
            if not isinstance(value, str):
                failures.append(self._fail("maxLength", f"{name} must be a string"))
            elif len(value) > self.max_length:
                failures.append(
                    self._fail(
                        "maxLength",
                        f"{name} must be at most {self.max_length} characters long "
                        f"(it has {len(value)})",
                    )
                )
        if self.regex is not None:
            failures.extend(self._check_pattern(name, value))
        if self.minimum is not None or self.maximum is not None:
            failures.extend(self._check_range(name, value))
        return failures

    def _check_pattern(self, name: str, value: Any) -> list[Failure]:
        assert self.regex is not None
        shown = display_value(self.pattern, limit=80)
        if not isinstance(value, str):
            return [self._fail("pattern", f"{name} must be a string matching {shown}")]
        if len(value) > MAX_MATCH_INPUT:
            # Bounding the input bounds the matching time of any accepted pattern.
            return [
                self._fail(
                    "pattern",
                    f"{name} is too long to check against its pattern "
                    f"({len(value)} characters; the limit is {MAX_MATCH_INPUT})",
                )
            ]
        if self.regex.fullmatch(value) is None:
            return [self._fail("pattern", f"{name} must match the pattern {shown}")]
        return []

    def _check_range(self, name: str, value: Any) -> list[Failure]:
        if not _is_number(value) or not math.isfinite(value):
            kind = "minimum" if self.minimum is not None else "maximum"
            return [self._fail(kind, f"{name} must be a number")]
        failures = []
        if self.minimum is not None and value < self.minimum:
            failures.append(self._fail("minimum", f"{name} must be at least {self.minimum}"))
        if self.maximum is not None and value > self.maximum:
            failures.append(self._fail("maximum", f"{name} must be at most {self.maximum}"))
        return failures

    def _fail(self, kind: str, message: str) -> Failure:
        return Failure(
            rule_id=f"{self.rule_id}/{kind}",
            location=f"{self.location}.{kind}",
            policy=self.policy,
            message=message,
        )
