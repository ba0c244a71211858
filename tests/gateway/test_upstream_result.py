"""gateway.lean.UpstreamResult remembers the upstream's wire form so the fast path can send it
as is; any change to the result must make it forget, or a redacted or rewritten result would
go out as the upstream sent it (the end-to-end case: tests/gateway/test_fastpath.py,
result redaction)."""

import copy

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
