"""gateway.schema_check: jsonschema-rs may only ever say "valid" where python-jsonschema (the
authority the gateway's error messages come from) says valid too, it must never fetch a remote
`$ref`, and it must actually judge the schemas tools declare (else it saves nothing)."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for

from gateway import schema_check

# (schema, values): the keywords tool schemas use, with values on both sides of each rule.
CORPUS: list[tuple[dict[str, Any], list[Any]]] = [
    (
        {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
        [{"message": "hi"}, {}, {"message": 3}, {"message": None}, {"message": "é日本"}, []],
    ),
    (
        {
            "type": "object",
            "properties": {
                "a": {"type": "number", "minimum": 0, "exclusiveMaximum": 10},
                "b": {"type": "integer", "multipleOf": 3},
            },
            "additionalProperties": False,
        },
        [
            {"a": 0},
            {"a": 10},
            {"a": 9.999},
            {"a": -0.0},
            {"b": 6},
            {"b": 6.0},
            {"b": 7},
            {"b": True},
            {"b": 10**30},
            {"b": 3 * 10**30},
            {"c": 1},
        ],
    ),
    (
        {"type": "string", "minLength": 2, "maxLength": 3},
        ["ab", "a", "abcd", "日本", "😀😀", "😀", ""],
    ),
    (
        {"type": "string", "pattern": "^[a-z]+-[0-9]{2}$"},
        ["abc-12", "abc-123", "ABC-12", "abc-12\n", "x-١٢", "xabc-12y"],
    ),
    (
        {"type": "string", "pattern": "\\d+"},
        ["12", "x1", "١٢", "none"],
    ),
    (
        {"type": "array", "items": {"type": "integer"}, "minItems": 1, "uniqueItems": True},
        [[1, 2], [], [1, 1], [1, 1.0], [1, True], ["1"], [[1], [1]]],
    ),
    (
        {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False},
        [["a", 1], ["a"], ["a", 1, 2], [1, "a"]],
    ),
    (
        {"type": "array", "contains": {"const": 5}, "maxContains": 1},
        [[5], [1, 5], [5, 5], [1]],
    ),
    (
        {"enum": ["read", "write", 1, None, {"k": [1]}]},
        ["read", "Read", 1, 1.0, True, None, {"k": [1]}, {"k": [1.0]}, {"k": [True]}],
    ),
    (
        {"const": False},
        [False, 0, None, True],
    ),
    (
        {"anyOf": [{"type": "string"}, {"type": "null"}], "not": {"const": ""}},
        ["x", None, "", 1],
    ),
    (
        {"oneOf": [{"type": "integer"}, {"minimum": 2}]},
        [1, 3, 2.5, "x"],
    ),
    (
        {
            "type": "object",
            "if": {"properties": {"kind": {"const": "file"}}},
            "then": {"required": ["path"]},
            "else": {"required": ["url"]},
        },
        [{"kind": "file", "path": "/x"}, {"kind": "file"}, {"url": "u"}, {}],
    ),
    (
        {
            "$defs": {"pos": {"type": "integer", "minimum": 1}},
            "type": "object",
            "properties": {"page": {"$ref": "#/$defs/pos"}, "size": {"$ref": "#/$defs/pos"}},
        },
        [{"page": 1}, {"page": 0}, {"size": "1"}, {}],
    ),
    (
        {
            "type": "object",
            "properties": {"a": {}},
            "patternProperties": {"^x-": {"type": "string"}},
            "unevaluatedProperties": False,
        },
        [{"a": 1}, {"x-y": "s"}, {"x-y": 1}, {"b": 1}],
    ),
    (
        {"type": "object", "dependentRequired": {"user": ["domain"]}, "minProperties": 1},
        [{"user": "u", "domain": "d"}, {"user": "u"}, {"domain": "d"}, {}],
    ),
    (
        {"type": "object", "propertyNames": {"maxLength": 3}, "maxProperties": 2},
        [{"abc": 1}, {"abcd": 1}, {"a": 1, "b": 2, "c": 3}],
    ),
    (
        # `format` is an annotation for both (neither asserts it).
        {"type": "string", "format": "email"},
        ["not an email", "a@b.c"],
    ),
    (
        # What the SDK's MCPServer generates for `def echo(message: str) -> str`.
        {
            "properties": {"message": {"title": "Message", "type": "string"}},
            "required": ["message"],
            "title": "echoArguments",
            "type": "object",
        },
        [{"message": "x"}, {"message": 1}, {}],
    ),
    (
        {
            "properties": {"result": {"title": "Result", "type": "string"}},
            "required": ["result"],
            "title": "echoOutput",
            "type": "object",
        },
        [{"result": "x"}, {"result": None}, {}],
    ),
    (
        # An older dialect named by `$schema`: the output check picks the draft from it.
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"n": {"type": "integer", "exclusiveMinimum": 0}},
            "dependencies": {"n": ["m"]},
        },
        [{"n": 1, "m": 0}, {"n": 1}, {"n": 0, "m": 0}, {}],
    ),
    (
        # draft-07 ignores the siblings of a `$ref`; Draft 2020-12 applies them.
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"n": {"$ref": "#/definitions/x", "maximum": 5}},
            "definitions": {"x": {"type": "integer"}},
        },
        [{"n": 1}, {"n": 100}, {"n": "1"}],
    ),
    (
        # A subschema switching dialects.
        {
            "type": "object",
            "properties": {
                "n": {
                    "$id": "https://example.test/n",
                    "$schema": "http://json-schema.org/draft-04/schema#",
                    "type": "integer",
                    "maximum": 5,
                    "exclusiveMaximum": True,
                }
            },
        },
        [{"n": 4}, {"n": 5}, {"n": 6}],
    ),
]


def _python_input(schema: dict[str, Any], value: Any) -> bool:
    return Draft202012Validator(schema).is_valid(value)


def _python_output(schema: dict[str, Any], value: Any) -> bool:
    return validator_for(schema)(schema).is_valid(value)


@pytest.mark.parametrize(("schema", "values"), CORPUS, ids=lambda v: json.dumps(v)[:40])
def test_the_fast_check_never_accepts_what_python_jsonschema_refuses(schema, values):
    for value in values:
        if schema_check.arguments_conform(schema, value):
            assert _python_input(schema, value), (schema, value)
        if schema_check.output_conforms(schema, value):
            assert _python_output(schema, value), (schema, value)


def test_it_judges_the_common_schemas_itself():
    """Where python-jsonschema says valid, the fast check says so too (except for the
    documented regex differences): otherwise every call would pay for both."""
    missed = []
    for schema, values in CORPUS:
        if "pattern" in schema or "$schema" in json.dumps(schema):
            continue  # regex dialects differ; other JSON Schema dialects: python alone
        for value in values:
            if _python_input(schema, value) and not schema_check.arguments_conform(schema, value):
                missed.append((schema, value))
    assert missed == []


def test_regex_differences_only_go_one_way():
    """ECMA-262 `\\d` is ASCII only and `$` does not match before a final newline: the fast
    check refuses those, python-jsonschema accepts them and stays the one that decides."""
    digits = {"type": "string", "pattern": "^\\d+$"}
    assert _python_input(digits, "١٢") and not schema_check.arguments_conform(digits, "١٢")
    anchored = {"type": "string", "pattern": "^abc$"}
    assert _python_input(anchored, "abc\n") and not schema_check.arguments_conform(
        anchored, "abc\n"
    )


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=JSON_VALUES, index=st.integers(min_value=0, max_value=len(CORPUS) - 1))
def test_generated_values_agree(value, index):
    schema = CORPUS[index][0]
    if schema_check.arguments_conform(schema, value):
        assert _python_input(schema, value)
    if schema_check.output_conforms(schema, value):
        assert _python_output(schema, value)


def test_other_dialects_are_left_to_python_jsonschema():
    for schema, values in CORPUS:
        if "$schema" not in json.dumps(schema):
            continue
        for value in values:
            assert not schema_check.arguments_conform(schema, value)
            assert not schema_check.output_conforms(schema, value)
    draft_2020 = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "integer"}
    assert schema_check.arguments_conform(draft_2020, 1)


def test_non_json_values_go_to_python_jsonschema():
    schema = {"type": "object"}
    assert not schema_check.arguments_conform(schema, {1: "not a JSON key"})
    assert not schema_check.arguments_conform(schema, {"nan": float("nan")}) or _python_input(
        schema, {"nan": float("nan")}
    )


class _Recorder(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        _Recorder.hits.append(self.path)
        body = json.dumps({"type": "integer"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return  # keep the test output quiet


def test_a_remote_ref_is_never_fetched():
    """A tool schema pointing at another document: jsonschema-rs would fetch it by default
    (a request from the gateway to wherever the schema says). Compiled offline, it does not
    compile and python-jsonschema (no retrieval either) decides."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/schema.json"
        schema = {"type": "object", "properties": {"n": {"$ref": url}}}
        assert not schema_check.arguments_conform(schema, {"n": 1})
        assert not schema_check.output_conforms(schema, {"n": 1})
    finally:
        server.shutdown()
        server.server_close()
    assert _Recorder.hits == []
