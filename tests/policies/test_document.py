"""The policy YAML format: parse (safely), validate against a catalog, export, diff."""

from __future__ import annotations

import time

import pytest
import yaml

from policies.document import (
    MAX_DOCUMENT_BYTES,
    diff_documents,
    export_document,
    parse_document,
    policy_from_mapping,
    policy_to_mapping,
    validate_document,
)
from policies.errors import PolicyDocumentError, ValidationError
from policies.types import (
    ArgumentRule,
    Limits,
    Override,
    Pin,
    PolicyDocument,
    PolicySpec,
    Subjects,
    ToolArguments,
    ToolRules,
)
from tests.policies.test_engine import SNAPSHOT

ISSUE_EXAMPLE = """\
consumer: daily-triage-agent
allow:
  toolGroups: ["jira-triage", "notion-read", "slack-post"]
deny:
  tools: ["slack.delete_channel", "jira.delete_issue"]
outbound:
  allowDomains: ["api.slack.com", "api.atlassian.com", "api.notion.com"]
limits:
  rateLimitPerMinute: 120
"""

CANONICAL = """\
toolGroups:
  daily-triage: ["tickets/list_*", "tickets.get_ticket", "chat.post_to_triage"]
policies:
  - name: daily-triage
    description: "What the triage agent may do"
    consumer: triage-bot
    subjects:
      teams: ["support"]
      users: ["alice@acme.test"]
    allow:
      toolGroups: ["daily-triage"]
    deny:
      tools: ["chat.delete_channel", "tickets.delete_ticket"]
    arguments:
      tickets.list_tickets:
        limit:
          minimum: 1
          maximum: 50
        status:
          enum: ["open", "pending"]
          required: true
      tickets.get_ticket:
        id:
          pattern: 'T-\\d{1,6}'
          maxLength: 8
    overrides:
      - name: chat.post_to_triage
        tool: chat.post_message
        title: "Post to #triage"
        description: "Post a message to the #triage channel."
        pin:
          channel: "triage"
    outbound:
      allowDomains: ["api.slack.com"]
    limits:
      rateLimitPerMinute: 120
      rateLimitPerDay: 5000
      perTool:
        chat.post_to_triage:
          rateLimitPerMinute: 5
    redact:
      arguments: ["text"]
      results: ["items.*.reporter_email"]
  - name: guard-rails
    subjects:
      agents: ["*"]
    deny:
      tools: ["*/delete_*"]
    arguments:
      "chat/*":
        text:
          maxLength: 4000
    limits:
      rateLimitPerDay: 100000
      per: organization
"""


def errors_of(text: str | bytes) -> list[ValidationError]:
    with pytest.raises(PolicyDocumentError) as caught:
        parse_document(text)
    return caught.value.errors


def only_error(text: str | bytes) -> ValidationError:
    (error,) = errors_of(text)
    return error


# --------------------------------------------------------------------------- round trip


def test_the_issue_example_parses_and_is_already_canonical() -> None:
    document = parse_document(ISSUE_EXAMPLE)
    (spec,) = document.policies
    assert spec.name == "daily-triage-agent"  # a policy is named after its consumer
    assert spec.agents == ("daily-triage-agent",)
    assert spec.allow.tool_groups == ("jira-triage", "notion-read", "slack-post")
    assert spec.deny.tools == ("slack.delete_channel", "jira.delete_issue")
    assert spec.limits.per_minute == 120
    assert export_document(document) == ISSUE_EXAMPLE


def test_a_full_document_round_trips_exactly_both_ways() -> None:
    document = parse_document(CANONICAL)
    assert export_document(document) == CANONICAL
    assert parse_document(export_document(document)) == document
    triage = document.policies[0]
    assert triage.arguments[1].rules[0].pattern == r"T-\d{1,6}"
    assert triage.overrides[0].pin == {"channel": "triage"}
    assert document.policies[1].limits.per == "organization"


def test_export_is_stable_whatever_the_input_layout() -> None:
    messy = """
# a comment
limits: {rateLimitPerMinute: 120}
outbound: {allowDomains: [api.slack.com, api.atlassian.com, api.notion.com]}
deny:
  tools:
    - slack.delete_channel
    - 'jira.delete_issue'
allow: {toolGroups: [jira-triage, notion-read, slack-post]}
consumer: "daily-triage-agent"
"""
    assert export_document(parse_document(messy)) == ISSUE_EXAMPLE


def test_awkward_strings_and_values_survive_a_round_trip() -> None:
    spec = PolicySpec(
        name="odd",
        description='Line one\nline "two"\t# not a comment: yes\u200b\u2028end',
        subjects=Subjects(agents=("*",), users=("o'brien@example.com",)),
        arguments=(
            ToolArguments(
                tool="chat.post_message",
                rules=(
                    ArgumentRule(
                        argument="channel", enum=("true", "123", "null", "", True, 1, 2.5, None)
                    ),
                    ArgumentRule(
                        argument="meta", pinned=Pin({"a": [1, -2.5, 1e20, True, None, "x: y"]})
                    ),
                    ArgumentRule(argument="weird key: #1", pinned=Pin("yes")),
                    ArgumentRule(argument="count", minimum=-0.5, maximum=1e16),
                    ArgumentRule(argument="ref", pattern=r"it's \d+\.\d+"),
                ),
            ),
        ),
        overrides=(Override(name="chat.say", tool="chat/post_message", description="  leading"),),
    )
    document = PolicyDocument(policies=(spec,))
    text = export_document(document)
    assert parse_document(text) == document
    assert export_document(parse_document(text)) == text
    # Invisible characters are spelled out, so a reviewer sees them.
    assert "\\u200b" in text and "\\u2028" in text
    assert "\u200b" not in text


def test_several_policies_without_groups_use_the_long_form() -> None:
    document = PolicyDocument(
        policies=(
            PolicySpec(name="a", consumer="bot", allow=ToolRules(tools=("x.y",))),
            PolicySpec(name="b", consumer="bot", deny=ToolRules(tools=("x.z",))),
        )
    )
    text = export_document(document)
    assert text.startswith("policies:\n  - name: a\n")
    assert parse_document(text) == document


def test_long_lists_are_written_one_item_per_line() -> None:
    tools = tuple(f"tickets.tool_number_{i}" for i in range(8))
    document = PolicyDocument(
        policies=(PolicySpec(name="p", consumer="bot", allow=ToolRules(tools=tools)),)
    )
    text = export_document(document)
    assert '  tools:\n    - "tickets.tool_number_0"\n' in text
    assert max(len(line) for line in text.splitlines()) <= 100
    assert parse_document(text) == document


def test_a_policy_maps_to_json_and_back() -> None:
    document = parse_document(CANONICAL)
    for spec in document.policies:
        data = policy_to_mapping(spec)
        assert policy_from_mapping(data) == spec
    single = parse_document(ISSUE_EXAMPLE)
    assert policy_to_mapping(single.policies[0]) == yaml.safe_load(ISSUE_EXAMPLE)


def test_a_bad_mapping_is_refused_with_locations() -> None:
    with pytest.raises(PolicyDocumentError) as caught:
        policy_from_mapping({"consumer": "bot", "allow": {"tools": ["chat"]}, "deny": {"tool": []}})
    assert [(e.location, e.message.split(";")[0]) for e in caught.value.errors] == [
        ("deny.tool", "unknown key 'tool'"),
        (
            "allow.tools[0]",
            "'chat' names no tool: write 'server.tool' or 'server/tool' (for a whole server use allow.servers or 'server/*')",
        ),
    ]


# --------------------------------------------------------------------------- parse errors


def test_errors_name_their_location_and_line() -> None:
    text = """\
policies:
  - name: ok
    consumer: bot
    alow:
      tools: ["chat.post_message"]
    deny:
      tools: ["chat.delete_channel", "delete everything"]
    limits:
      rateLimitPerMinute: fast
    arguments:
      chat.post_message:
        text: {pattern: "(a+)+", maxLength: -1}
"""
    errors = errors_of(text)
    assert [(e.location, e.line) for e in errors] == [
        ("policies[0].alow", 4),
        ("policies[0].limits.rateLimitPerMinute", 9),
        ("policies[0].deny.tools[1]", 7),
        ('policies[0].arguments["chat.post_message"].text.pattern', 12),
        ('policies[0].arguments["chat.post_message"].text.maxLength', 12),
    ]
    assert errors[0].message.startswith("unknown key 'alow'; did you mean 'allow'?")
    assert errors[1].message == "must be a whole number, not a string"
    assert errors[2].message.startswith("'delete everything' names no tool: write 'server.tool'")
    assert str(errors[0]).startswith("policies[0].alow (line 4): unknown key 'alow'")


@pytest.mark.parametrize(
    ("text", "location", "message"),
    [
        (
            "consumer: bot\nallow: {tools: chat.x}\n",
            "allow.tools",
            "must be a list of strings, not a string",
        ),
        ("consumer: bot\nallow:\n", "allow", "must be a mapping, not null"),
        ("consumer: 7\n", "consumer", "must be a string, not a number"),
        ("name: p\nallow: {tools: [chat.x]}\n", "subjects", "the policy applies to nobody"),
        ("allow: {tools: [chat.x]}\n", "name", "a policy needs a name"),
        (
            "consumer: bot\nsubjects: {users: [not-an-email]}\n",
            "subjects.users[0]",
            "'not-an-email' is not an email address",
        ),
        (
            "consumer: bot\nallow: {tools: [a.b, a.b]}\n",
            "allow.tools[1]",
            "'a.b' is listed twice (also at [0])",
        ),
        (
            "consumer: bot\noutbound: {allowDomains: ['https://api.slack.com']}\n",
            "outbound.allowDomains[0]",
            "must be a host name",
        ),
        (
            "consumer: bot\nlimits: {per: team}\n",
            "limits.per",
            "must be 'principal' or 'organization'",
        ),
        (
            "consumer: bot\nlimits: {rateLimitPerMinute: 0}\n",
            "limits.rateLimitPerMinute",
            "must be a whole number from 1",
        ),
        (
            "consumer: bot\nredact: {results: ['a..b']}\n",
            "redact.results[0]",
            "is not a field path",
        ),
        ("consumer: bot\narguments: {chat.x: {a: {}}}\n", 'arguments["chat.x"].a', "has no rule"),
        (
            "consumer: bot\narguments: {chat.x: {a: {minimum: 5, maximum: 1}}}\n",
            'arguments["chat.x"].a.minimum',
            "is greater than maximum (1)",
        ),
        (
            "consumer: bot\narguments: {chat.x: {a: {pinned: b, enum: [a]}}}\n",
            'arguments["chat.x"].a.pinned',
            "the pinned value breaks this rule: argument 'a' must be one of 'a'",
        ),
        (
            "consumer: bot\noverrides: [{name: other.x, tool: chat.y}]\n",
            "overrides[0].name",
            "must start with the server of its tool ('chat.')",
        ),
        (
            "consumer: bot\noverrides: [{name: chat.z}]\n",
            "overrides[0].tool",
            "an override needs 'tool'",
        ),
        (
            "policies: [{consumer: a}, {consumer: a}]\n",
            "policies[1].name",
            "'a' is also the name of policies[0]",
        ),
        ("policies: {}\n", "policies", "must be a list of policies"),
        ("- consumer: bot\n", "", "a policy document is a mapping"),
    ],
)
def test_structural_errors(text: str, location: str, message: str) -> None:
    errors = errors_of(text)
    assert errors[0].location == location, errors
    assert message in errors[0].message, errors[0].message


def test_duplicate_keys_are_refused_not_silently_merged() -> None:
    error = only_error("consumer: bot\ndeny: {tools: [chat.delete_channel]}\ndeny: {tools: []}\n")
    assert error.line == 3
    assert error.message.startswith("duplicate key 'deny' (first at line 2)")


# --------------------------------------------------------------------------- hostile input


def test_a_yaml_bomb_is_refused_quickly() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    started = time.perf_counter()
    error = only_error(bomb)
    assert time.perf_counter() - started < 0.5
    assert error.message == "anchors (&name) are not allowed; write the value out"
    assert error.line == 1


def test_aliases_tags_merge_keys_and_dates_are_refused() -> None:
    assert "aliases" in only_error("consumer: bot\ndescription: *x\n").message
    assert only_error("consumer: !!python/object/apply:os.system [echo hi]\n").message.startswith(
        "YAML tags (tag:yaml.org,2002:python/object/apply:os.system) are not allowed"
    )
    assert "merge keys" in only_error("consumer: bot\n<<: {a: b}\n").message
    assert only_error("consumer: bot\ndescription: 2024-05-01\n").message == (
        "'2024-05-01' reads as a date; quote it to make it a string"
    )
    assert (
        "only finite numbers"
        in only_error("consumer: bot\narguments: {a.b: {x: {maximum: .inf}}}\n").message
    )


def test_a_huge_file_is_refused_before_parsing() -> None:
    huge = "consumer: bot\ndescription: " + "x" * MAX_DOCUMENT_BYTES + "\n"
    started = time.perf_counter()
    error = only_error(huge)
    assert time.perf_counter() - started < 0.1
    assert "the limit is 262144 bytes (256 KiB)" in error.message
    assert "limit is 262144" in only_error(huge.encode()).message


def test_deep_nesting_and_huge_numbers_are_refused() -> None:
    deep = "consumer: bot\narguments: {a.b: {x: {pinned: " + "[" * 30 + "]" * 30 + "}}}\n"
    assert "nested deeper than 20 levels" in only_error(deep).message
    big = "consumer: bot\nlimits: {rateLimitPerDay: " + "9" * 5000 + "}\n"
    assert "is not a usable number" in only_error(big).message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the document is empty"),
        ("# only a comment\n", "the document is empty"),
        ("consumer: bot\n---\nconsumer: other\n", "a file holds one YAML document"),
        ("consumer: [bot\n", "not valid YAML"),
        ("{[a]: b}\n", "keys must be strings, not a mapping or list"),
        ("consumer: bot\n1: x\n", "keys must be strings, not a number"),
        (b"consumer: \xff\xfe\n", "the file is not UTF-8 text (byte 10)"),
    ],
)
def test_unreadable_documents_get_one_clear_error(text: str | bytes, message: str) -> None:
    assert message in only_error(text).message


# --------------------------------------------------------------------------- validate


VALID = """\
policies:
  - name: daily-triage
    consumer: triage-bot
    subjects: {teams: [support], users: [Alice@Acme.test], agentTags: [prod]}
    allow: {toolGroups: [daily-triage], servers: [notes], tools: ["chat/list_*"]}
    deny: {tools: ["*/delete_*"]}
    arguments:
      tickets.list_tickets:
        limit: {maximum: 50}
        status: {enum: [open, done]}
    overrides:
      - name: chat.post_to_triage
        tool: chat.post_message
        pin: {channel: triage}
    limits: {perTool: {chat.post_to_triage: {rateLimitPerMinute: 5}}}
"""


def test_a_valid_document_has_no_problems() -> None:
    assert validate_document(parse_document(VALID), SNAPSHOT) == []


def test_unknown_names_are_reported_where_they_are() -> None:
    text = """\
toolGroups:
  mine: ["tickets.get_tiket", "ghost/*"]
policies:
  - name: p
    consumer: nobody
    subjects: {teams: [sales], users: [eve@evil.test], agentTags: [staging], agents: ["*"]}
    allow: {toolGroups: [nope], servers: [ghost], tools: [chat.post_mesage]}
    overrides: [{name: chat.x, tool: chat.nope}]
    limits: {perTool: {tickets.nope: {rateLimitPerDay: 1}}}
"""
    problems = validate_document(parse_document(text), SNAPSHOT)
    assert [(p.location, p.message) for p in problems] == [
        (
            "toolGroups.mine[0]",
            "unknown tool 'tickets.get_tiket': no such tool in the catalog; did you mean 'tickets.get_ticket'?",
        ),
        ("toolGroups.mine[1]", "unknown server 'ghost' in 'ghost/*'"),
        ("policies[0].consumer", "unknown agent 'nobody'"),
        ("policies[0].subjects.teams[0]", "unknown team 'sales'"),
        ("policies[0].subjects.users[0]", "unknown user 'eve@evil.test'"),
        ("policies[0].subjects.agentTags[0]", "unknown agent tag 'staging'"),
        ("policies[0].allow.toolGroups[0]", "unknown tool group 'nope'"),
        ("policies[0].allow.servers[0]", "unknown server 'ghost'"),
        (
            "policies[0].allow.tools[0]",
            "unknown tool 'chat.post_mesage': no such tool in the catalog; did you mean 'chat.post_message'?",
        ),
        ("policies[0].overrides[0].tool", "unknown tool 'chat.nope': no such tool in the catalog"),
        (
            'policies[0].limits.perTool["tickets.nope"]',
            "unknown tool 'tickets.nope': no such tool in the catalog",
        ),
    ]
    assert all(p.severity == "error" for p in problems)


def test_suggestions_come_from_the_same_server_or_name_the_server() -> None:
    text = "consumer: triage-bot\nallow: {tools: [chats.post_message, chat.post_mesage]}\n"
    problems = validate_document(parse_document(text), SNAPSHOT)
    assert [p.message for p in problems] == [
        "unknown tool 'chats.post_message': no such tool in the catalog; "
        "there is no server 'chats' (did you mean 'chat'?)",
        "unknown tool 'chat.post_mesage': no such tool in the catalog; "
        "did you mean 'chat.post_message'?",
    ]


def test_rules_on_arguments_the_tool_does_not_have_or_of_the_wrong_type() -> None:
    text = """\
consumer: triage-bot
allow: {tools: [tickets.list_tickets]}
arguments:
  tickets.list_tickets:
    sort: {enum: [asc]}
    limit: {pattern: "[0-9]+"}
    status: {pinned: 3}
overrides:
  - {name: tickets.list_mine, tool: tickets.list_tickets, pin: {owner: me}}
"""
    problems = validate_document(parse_document(text), SNAPSHOT)
    assert [(p.location, p.message) for p in problems] == [
        (
            'arguments["tickets.list_tickets"].sort',
            "tool tickets.list_tickets has no argument 'sort' (its arguments: limit, status)",
        ),
        (
            'arguments["tickets.list_tickets"].limit',
            "argument 'limit' of tickets.list_tickets is not a string (integer); pattern and maxLength apply to strings",
        ),
        (
            'arguments["tickets.list_tickets"].status.pinned',
            "the pinned value does not fit tickets.list_tickets's schema: 3 is not of type 'string'",
        ),
        (
            "overrides[0].pin.owner",
            "tool tickets.list_tickets has no argument 'owner' (its arguments: limit, status)",
        ),
    ]


def test_conflicting_pins_are_a_validation_error_with_the_location() -> None:
    text = """\
policies:
  - name: a
    consumer: triage-bot
    arguments: {chat.post_message: {channel: {pinned: triage}}}
  - name: b
    consumer: triage-bot
    arguments: {"chat/post_message": {channel: {pinned: general}}}
"""
    (problem,) = validate_document(parse_document(text), SNAPSHOT)
    assert problem.location == 'policies[1].arguments["chat/post_message"].channel.pinned'
    assert "pins it to 'triage' with the same specificity (one tool)" in problem.message


def test_warnings_do_not_hide_errors_and_come_last() -> None:
    text = """\
consumer: triage-bot
allow: {tools: ["crm.sync_contacts", "tickets/archive_*", "*/*", "ghost.tool"]}
"""
    problems = validate_document(parse_document(text), SNAPSHOT)
    assert [(p.severity, p.location) for p in problems] == [
        ("error", "allow.tools[3]"),
        ("warning", "allow.tools[0]"),
        ("warning", "allow.tools[1]"),
        ("warning", "allow.tools[2]"),
    ]
    assert "is not approved or is quarantined" in problems[1].message
    assert (
        problems[2].message == "the pattern 'tickets/archive_*' matches no tool in the catalog yet"
    )
    assert problems[3].message == "allows every tool of every server"


def test_validate_checks_structure_of_specs_built_in_code() -> None:
    spec = PolicySpec(
        name="p", consumer="triage-bot", limits=Limits(per_minute=0), deny=ToolRules(tools=("x",))
    )
    problems = validate_document(PolicyDocument(policies=(spec,)), SNAPSHOT)
    assert [p.location for p in problems] == ["deny.tools[0]", "limits.rateLimitPerMinute"]


# --------------------------------------------------------------------------- diff


def test_diff_lists_what_an_approver_needs_to_read() -> None:
    live = parse_document(CANONICAL)
    proposed_text = (
        CANONICAL.replace(
            'tools: ["chat.delete_channel", "tickets.delete_ticket"]',
            'tools: ["chat.delete_channel", "crm.export_all"]',
        )
        .replace("rateLimitPerMinute: 120", "rateLimitPerMinute: 60")
        .replace(
            '  daily-triage: ["tickets/list_*", ',
            '  daily-triage: ["notes.read_page", "tickets/list_*", ',
        )
        .replace("  - name: guard-rails\n", "  - name: guard-rails2\n")
    )
    lines = diff_documents(live, parse_document(proposed_text))
    assert lines[:5] == [
        "+ tool group 'daily-triage': tools: \"notes.read_page\"",
        "- policy 'daily-triage': deny.tools: \"tickets.delete_ticket\"",
        "+ policy 'daily-triage': deny.tools: \"crm.export_all\"",
        "~ policy 'daily-triage': limits.rateLimitPerMinute: 120 -> 60",
        "- policy 'guard-rails' removed",
    ]
    assert lines[5] == "+ policy 'guard-rails2' added"
    assert "+ policy 'guard-rails2': limits.per: organization" in lines
    assert diff_documents(live, live) == []


# --------------------------------------------------------------------------- enabled


def test_a_disabled_policy_round_trips_and_enabled_is_the_default() -> None:
    text = ISSUE_EXAMPLE.replace("consumer:", "enabled: false\nconsumer:", 1)
    document = parse_document(text)
    assert document.policies[0].enabled is False
    assert export_document(document) == text
    assert parse_document(ISSUE_EXAMPLE).policies[0].enabled is True
    # `enabled: true` is the default, so the canonical form leaves it out.
    explicit = ISSUE_EXAMPLE.replace("consumer:", "enabled: true\nconsumer:", 1)
    assert export_document(parse_document(explicit)) == ISSUE_EXAMPLE
    # Long form, and the JSON mapping, keep it too.
    long_form = CANONICAL.replace(
        "  - name: guard-rails\n", "  - name: guard-rails\n    enabled: false\n"
    )
    assert long_form != CANONICAL
    parsed = parse_document(long_form)
    assert [p.enabled for p in parsed.policies] == [True, False]
    assert export_document(parsed) == long_form
    assert policy_to_mapping(parsed.policies[1])["enabled"] is False
    assert policy_from_mapping(policy_to_mapping(parsed.policies[1])) == parsed.policies[1]


def test_enabled_must_be_true_or_false() -> None:
    with pytest.raises(PolicyDocumentError) as caught:
        parse_document(ISSUE_EXAMPLE + 'enabled: "no"\n')
    assert [(e.location, e.line) for e in caught.value.errors] == [("enabled", 10)]
    assert "must be true or false" in caught.value.errors[0].message


def test_diff_says_when_a_policy_is_disabled_or_enabled() -> None:
    live = parse_document(ISSUE_EXAMPLE)
    disabled = parse_document(ISSUE_EXAMPLE + "enabled: false\n")
    assert diff_documents(live, disabled) == ["~ policy 'daily-triage-agent': enabled -> disabled"]
    assert diff_documents(disabled, live) == ["~ policy 'daily-triage-agent': disabled -> enabled"]
