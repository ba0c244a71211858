"""gateway.lean.UpstreamResult remembers the upstream's wire form so the fast path can send it
as is; any change to the result must make it forget, or a redacted or rewritten result would
go out as the upstream sent it (the end-to-end case: tests/gateway/test_fastpath.py,
result redaction)."""

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp_types import TextContent
from mcp_types.methods import SERVER_RESULTS, serialize_server_result

from gateway.lean import UpstreamResult
from gateway.redaction import redact_result

RAW = {"content": [{"type": "text", "text": '{"email": "a@example.com"}'}], "isError": False}


def _remembered() -> UpstreamResult:
    result = UpstreamResult.model_validate(RAW, by_name=False)
    result.wire_for["2026-07-28"] = dict(RAW)
    return result


def test_copies_and_changes_forget_the_wire_form():
    assert _remembered().wire_for  # kept while nothing changed
    assert _remembered().model_copy().wire_for == {}
    assert _remembered().model_copy(deep=True).wire_for == {}
    assert copy.copy(_remembered()).wire_for == {}
    changed = _remembered()
    changed.is_error = True
    assert changed.wire_for == {}
    rewritten = _remembered()
    rewritten.content = [TextContent(type="text", text="other")]
    assert rewritten.wire_for == {}


def test_a_redacted_result_has_no_wire_form_to_leak():
    redacted = redact_result(_remembered(), ["email"])
    assert getattr(redacted, "wire_for", {}) == {}
    assert "a@example.com" not in redacted.content[0].text


def test_a_wire_result_answers_from_its_wire_form_and_builds_the_model_on_demand():
    """gateway.lean.WireResult: what the pipeline reads (isError, structured content, the
    wire form) without the SDK model; `model()` builds it once, validated, remembering the
    same wire form; a redaction of it still forgets it."""
    from gateway.lean import WireResult

    raw = {**RAW, "isError": True, "structuredContent": {"n": 1}}
    result = WireResult(raw, "2026-07-28", dict(raw))
    assert result.is_error is True and result.structured_content == {"n": 1}
    model = result.model()
    assert model is result.model()  # built once
    assert model.is_error and model.structured_content == {"n": 1}
    assert model.wire_for == {"2026-07-28": raw}
    assert getattr(redact_result(model, ["email"]), "wire_for", {}) == {}


def test_a_result_the_sdk_model_refuses_fails_the_call_before_its_audit_record():
    """Content the version's schema let through but the SDK model refuses: when the pipeline
    needs the model (redaction, the SDK path, another protocol version) it gets the same
    'cannot read' tool failure the lean path's own validation gave."""
    from gateway.errors import ToolFailure
    from gateway.lean import WireResult
    from gateway.pipeline import _model_of

    broken = {"content": [{"type": "text"}]}  # a text block without its text
    with pytest.raises(ToolFailure, match="cannot read"):
        _model_of(WireResult(broken, "2026-07-28", dict(broken)), "fault")


# ----------------------------------------------------------------- plain_text_wire vs the SDK

_texts = st.text(alphabet=st.characters(codec=None, categories=None), max_size=20)
_json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | _texts
# Nested JSON as an upstream's parser gives it (non-finite floats included: the SDK's dump
# turns them into null, so the shortcut must leave them to it).
_json = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_texts, inner, max_size=3),
    max_leaves=8,
)
_json_object = st.dictionaries(_texts, _json, max_size=3)
_server_meta = st.fixed_dictionaries(
    {
        "io.modelcontextprotocol/serverInfo": st.fixed_dictionaries(
            {"name": _texts, "version": _texts}
        )
    }
)
_text_block = st.fixed_dictionaries({"type": st.just("text"), "text": _texts})
# Near misses of a text block: other types, extra or missing members, values of other types.
_block = (
    _text_block
    | st.dictionaries(
        st.sampled_from(["type", "text", "annotations", "_meta", "data"]), _json_scalars
    )
    | st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "image", "Text"]), "text": _json_scalars}
    )
    | _json_scalars
)
_optional_members = {
    "isError": st.booleans() | st.booleans() | _json_scalars,
    "structuredContent": _json_object | _json_object | _json,
    "_meta": _server_meta
    | _json_object
    | _json
    | st.builds(lambda m, o: {**o, **m}, _server_meta, _json_object),
}
# The common shapes (what SDK servers send; mostly answered by the shortcut)...
_plain = st.fixed_dictionaries(
    {"content": st.lists(_text_block, max_size=3)},
    optional={**_optional_members, "resultType": st.just("complete") | _json_scalars},
)
_plain_typed = st.fixed_dictionaries(
    {"content": st.lists(_text_block, max_size=3), "resultType": st.just("complete")},
    optional={**_optional_members, "ttlMs": _json_scalars},
)
# ...and anything shaped roughly like a result.
_results = (
    _plain
    | _plain_typed
    | st.fixed_dictionaries(
        {},
        optional={
            "content": st.lists(_text_block, max_size=3)
            | st.lists(_block, max_size=3)
            | _json_scalars,
            "isError": st.booleans() | _json_scalars,
            "resultType": st.sampled_from(["complete", "input_required", "other"]) | _json_scalars,
            "structuredContent": _json,
            "_meta": _json,
            "extra": _json_scalars,
        },
    )
)
_VERSIONS = sorted({version for method, version in SERVER_RESULTS if method == "tools/call"})


@pytest.mark.parametrize("version", _VERSIONS)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_results)
def test_plain_text_wire_is_the_sdks_validated_form_or_declines(version: str, raw: dict) -> None:
    """gateway.lean.plain_text_wire stands in for the SDK's `serialize_server_result` on the
    commonest answer: whenever it answers, the SDK accepts the same result and gives the same
    dict, in the same key order (what the fast path sends); anything else it declines."""
    from gateway.lean import plain_text_wire

    ours = plain_text_wire(raw, version)
    if ours is None:
        return
    theirs = serialize_server_result("tools/call", version, raw)
    assert ours == theirs
    assert json.dumps(ours) == json.dumps(theirs)  # same key order on the wire


@pytest.mark.parametrize("version", _VERSIONS)
def test_plain_text_wire_answers_the_common_result_itself(version: str) -> None:
    # The shortcut must actually serve the common case (else it only costs a check): text
    # blocks with and without isError, on every version the SDK knows.
    from gateway.lean import plain_text_wire

    typed = {"resultType": "complete"} if version == "2026-07-28" else {}
    sdk_server = {  # what an SDK server's `echo(message: str) -> str` answers
        "content": [{"type": "text", "text": "hi"}],
        "isError": False,
        **typed,
        "structuredContent": {"result": "hi"},
        "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "up", "version": ""}},
    }
    for raw in (
        sdk_server,
        {"content": [{"type": "text", "text": "hello"}], **typed},
        {
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            "isError": True,
            **typed,
        },
        {"content": [], "isError": False, **typed},
    ):
        assert plain_text_wire(raw, version) == serialize_server_result("tools/call", version, raw)
    # What it leaves to the SDK: anything beyond plain text, coercible values, unknown versions.
    for raw in (
        {"content": [{"type": "text", "text": "x", "annotations": {"priority": 1}}], **typed},
        {"content": [{"type": "text", "text": "x"}], "isError": "false", **typed},
        {
            "content": [{"type": "text", "text": "x"}],
            "structuredContent": {"n": float("nan")},
            **typed,
        },
        {"content": [{"type": "text", "text": "x"}], "_meta": None, **typed},
    ):
        assert plain_text_wire(raw, version) is None
    assert plain_text_wire({"content": [], **typed}, "2099-01-01") is None
