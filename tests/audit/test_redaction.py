"""audit.redaction: what reaches the audit trail (and log lines) in place of secrets. An
append-only trail cannot be cleaned afterwards, so these pin the masking itself."""

from audit.redaction import MAX_DEPTH, MAX_STRING, REDACTED, redact

AGENT_KEY = "mgw_0123456789ab_" + "A" * 32
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def test_secret_named_keys_are_masked_at_any_depth_and_nothing_else_is():
    details = {
        "arguments": {"query": "weather", "auth": {"password": "hunter2", "Api-Key": "k"}},
        "items": [{"refresh_token": "r", "name": "x"}, ("client_secret", 3)],
        "Authorization": "Basic abc",
        "count": 2,
        "ratio": 0.5,
        "ok": True,
        "none": None,
    }
    assert redact(details) == {
        "arguments": {"query": "weather", "auth": {"password": REDACTED, "Api-Key": REDACTED}},
        "items": [{"refresh_token": REDACTED, "name": "x"}, ["client_secret", 3]],
        "Authorization": REDACTED,
        "count": 2,
        "ratio": 0.5,
        "ok": True,
        "none": None,
    }
    assert details["arguments"]["auth"]["password"] == "hunter2"  # a copy, the input unchanged


def test_caller_named_keys_are_masked_too():
    assert redact({"pin": "1234", "city": "Oslo"}, extra_keys=frozenset({"pin"})) == {
        "pin": REDACTED,
        "city": "Oslo",
    }


def test_token_shaped_strings_are_masked_wherever_they_appear():
    values = [
        f"key {AGENT_KEY} leaked",
        "Authorization: Bearer abcdefgh12345678",
        f"id token {JWT}",
        "ghp_" + "a" * 36,
        "xoxb-1234567890-abcdef",
        "sk-" + "b" * 40,
    ]
    masked = redact({"message": values})["message"]
    for original, value in zip(values, masked, strict=True):
        assert REDACTED in value, original
    assert masked[0] == f"key {REDACTED} leaked"
    # Look-alikes that are not tokens stay readable.
    assert redact(["skim milk", "github", "Bearer", "mgw_short"]) == [
        "skim milk",
        "github",
        "Bearer",
        "mgw_short",
    ]


def test_long_strings_are_cut_and_deep_structures_stopped():
    cut = redact("x" * (MAX_STRING + 10))
    assert cut.startswith("x" * MAX_STRING) and cut.endswith("[10 more characters]")
    deep: dict = {"leaf": "v"}
    for _ in range(MAX_DEPTH + 2):
        deep = {"d": deep}
    out = redact(deep)
    for _ in range(MAX_DEPTH + 1):
        out = out["d"]
    assert out == "[too deep]"


def test_anything_else_becomes_a_masked_string_and_keys_become_strings():
    class Opaque:
        def __str__(self) -> str:
            return f"opaque {AGENT_KEY}"

    assert redact({1: Opaque(), "set": {"a"}}) == {"1": f"opaque {REDACTED}", "set": "{'a'}"}
