"""gateway.lean.UpstreamResult remembers the upstream's wire form so the fast path can send it
as is; any change to the result must make it forget, or a redacted or rewritten result would
go out as the upstream sent it (the end-to-end case: tests/gateway/test_fastpath.py,
result redaction)."""

import copy

import pytest
from mcp_types import TextContent

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
