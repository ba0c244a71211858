"""A fast first look at JSON values against JSON Schemas, in front of python-jsonschema.

Every tools/call is checked twice against a schema: the arguments against the tool's input
schema (gateway.pipeline) and, on the lean upstream path, the structured result against its
output schema (the SDK session's check). python-jsonschema walks the schema in Python for each
value, which was one of the larger shares of the gateway's CPU per call; jsonschema-rs (Rust)
answers the same question for a fraction of it.

python-jsonschema stays the authority: `conforms` says True only when jsonschema-rs, compiled
offline, finds the value valid; anything else (invalid, a schema it cannot compile, a value it
cannot read) answers False and the caller runs python-jsonschema as before, which then gives
the verdict and the error messages users already see. Both implement the same drafts (each
passes the JSON-Schema-Test-Suite) and neither asserts `format`; where their regular
expressions differ, ECMA-262 (jsonschema-rs) is the stricter one (`\\d`, `\\w`, `$` before a
trailing newline), which only sends a value to python-jsonschema.
tests/gateway/test_schema_check.py compares the two verdicts over a corpus of schemas and
generated values.

jsonschema-rs is compiled with `offline=True`: a `$ref` to another document is never fetched
(its default would fetch http(s) references, a request from the gateway to wherever a tool's
schema points); such a schema does not compile and python-jsonschema decides, with its own
no-retrieval registry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

logger = logging.getLogger(__name__)

try:
    import jsonschema_rs
except ImportError:  # pragma: no cover - a declared dependency; without it every check is slow
    jsonschema_rs = None

_MAX_CACHED = 10_000
# id(schema) -> (the schema, kept alive so the id stays its own; what was derived from it)
SchemaCache = dict[int, tuple[Any, Any]]
_input: SchemaCache = {}
_output: SchemaCache = {}


def per_schema[T](cache: SchemaCache, schema: Any, derive: Callable[[Any], T]) -> T:
    """`derive(schema)`, remembered per schema object (the directory's cached tool snapshots
    and the SDK session's output schemas live as long as the tools do), in a bounded cache."""
    cached = cache.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    value = derive(schema)
    if len(cache) >= _MAX_CACHED:
        cache.clear()
    cache[id(schema)] = (schema, value)
    return value


def _compile(schema: Any, draft2020: bool) -> Any:
    if jsonschema_rs is None or not isinstance(schema, Mapping) or not _plain_dialect(schema):
        return None
    try:
        if draft2020:
            return jsonschema_rs.Draft202012Validator(schema, offline=True)
        return jsonschema_rs.validator_for(schema, offline=True)
    except Exception as exc:  # a schema it cannot compile: python-jsonschema decides
        logger.debug("jsonschema-rs cannot compile a schema (%s)", type(exc).__name__)
        return None


_DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"


def _plain_dialect(schema: Mapping[str, Any]) -> bool:
    """No `$schema` anywhere but an optional top-level Draft 2020-12 one. Other dialects
    (a draft-07 `$schema`, or a subschema switching dialects) are where the two
    implementations choose semantics differently (python-jsonschema's input validator is
    Draft 2020-12 whatever the schema says); python-jsonschema alone judges those."""
    top = schema.get("$schema", _DRAFT_2020_12)
    if not isinstance(top, str) or top.rstrip("#") != _DRAFT_2020_12:
        return False
    try:
        text = json.dumps({k: v for k, v in schema.items() if k != "$schema"})
    except (TypeError, ValueError):
        return False
    return '"$schema"' not in text


def _valid(validator: Any, instance: Any) -> bool:
    if validator is None:
        return False
    try:
        return bool(validator.is_valid(instance))
    except Exception:  # a value it cannot convert (a non-JSON Python object): ask the authority
        return False


def arguments_conform(schema: Mapping[str, Any], arguments: Any) -> bool:
    """True when `arguments` certainly satisfy the tool's input schema (Draft 2020-12, as the
    gateway's python-jsonschema validator); False: run that validator."""
    return _valid(per_schema(_input, schema, lambda s: _compile(s, draft2020=True)), arguments)


def output_conforms(schema: Mapping[str, Any], value: Any) -> bool:
    """True when `value` certainly satisfies an output schema (draft chosen by `$schema`, as
    the SDK's `validator_for`); False: run the SDK's check."""
    return _valid(per_schema(_output, schema, lambda s: _compile(s, draft2020=False)), value)
