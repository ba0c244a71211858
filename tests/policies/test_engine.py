"""The decision engine: what an agent may call, with which arguments, and why (no database)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from policies.engine import CompiledPolicy, compile
from policies.errors import PolicyCompileError
from policies.redaction import redact
from policies.types import (
    ArgumentRule,
    CatalogSnapshot,
    CatalogTool,
    Limits,
    Outbound,
    Override,
    Pin,
    PolicySpec,
    Principal,
    Redaction,
    Subjects,
    ToolArguments,
    ToolLimit,
    ToolRules,
)


def tool(server: str, name: str, *args: str, callable: bool = True, **types: str) -> CatalogTool:
    properties = {a: {"type": types.get(a, "string")} for a in args}
    return CatalogTool(
        server=server,
        name=name,
        title=name.replace("_", " ").title(),
        description=f"{server} {name}",
        input_schema={"type": "object", "properties": properties, "required": list(args)},
        annotations={"readOnlyHint": name.startswith(("list", "get"))},
        definition_hash=f"sha256:{server}.{name}",
        server_version_id=f"{server}-v1",
        callable=callable,
    )


SNAPSHOT = CatalogSnapshot(
    tools=(
        tool("tickets", "list_tickets", "status", "limit", limit="integer"),
        tool("tickets", "list_open"),
        tool("tickets", "get_ticket", "id"),
        tool("tickets", "update_ticket", "id", "status", "comment"),
        tool("tickets", "delete_ticket", "id"),
        tool("chat", "post_message", "channel", "text", "urgent", urgent="boolean"),
        tool("chat", "list_channels"),
        tool("chat", "delete_channel", "channel"),
        tool("notes", "read_page", "page"),
        tool("crm", "export_all", "format"),
        tool("crm", "sync_contacts", callable=False),  # quarantined: changed definition
    ),
    tool_groups={
        "daily-triage": ("tickets/list_*", "tickets.get_ticket", "chat.post_to_triage"),
        "readers": ("notes.read_page", "tickets/list_*"),
    },
    agent_slugs=frozenset({"triage-bot", "other-bot"}),
    team_slugs=frozenset({"support"}),
    user_emails=frozenset({"alice@acme.test"}),
    agent_tags=frozenset({"prod"}),
)

BOT = Principal(org_id=1, agent_id=10, agent_slug="triage-bot")
OTHER = Principal(org_id=1, agent_id=11, agent_slug="other-bot")


def policy(name: str = "p", **kwargs: Any) -> PolicySpec:
    kwargs.setdefault("consumer", "triage-bot")
    return PolicySpec(name=name, **kwargs)


def allow(*tools: str, groups: tuple[str, ...] = (), servers: tuple[str, ...] = ()) -> ToolRules:
    return ToolRules(tools=tools, tool_groups=groups, servers=servers)


def args(tool_ref: str, *rules: ArgumentRule) -> ToolArguments:
    return ToolArguments(tool=tool_ref, rules=rules)


def build(*policies: PolicySpec, version: str = "v1", **kwargs: Any) -> CompiledPolicy:
    return compile(SNAPSHOT, list(policies), version, **kwargs)


def allowed(
    compiled: CompiledPolicy, name: str, principal: Principal = BOT, **arguments: Any
) -> bool:
    return compiled.decide(principal, name, arguments).allowed


# --------------------------------------------------------------------------- allow / deny


def test_nothing_is_allowed_without_a_policy_and_the_reason_says_so() -> None:
    compiled = build()
    decision = compiled.decide(BOT, "tickets.list_open", {})
    assert not decision.allowed
    assert decision.error_class == "policy"
    assert decision.matched_rules == ("default:deny",)
    assert decision.reasons == (
        "denied: no policy allows tool tickets.list_open for agent 'triage-bot': "
        "no policy applies to this agent, so nothing is allowed",
    )


def test_a_policy_allows_only_what_it_names() -> None:
    compiled = build(policy("daily-triage", allow=allow("tickets.get_ticket")))
    assert allowed(compiled, "tickets.get_ticket", id="T-1")
    decision = compiled.decide(BOT, "tickets.delete_ticket", {"id": "T-1"})
    assert not decision.allowed
    assert decision.reasons == (
        "denied: no policy allows tool tickets.delete_ticket for agent 'triage-bot' "
        "(applicable policies: 'daily-triage')",
    )


def test_deny_wins_over_allow_in_the_same_policy_and_reads_well() -> None:
    compiled = build(
        policy(
            "daily-triage",
            allow=allow(servers=("chat",)),
            deny=ToolRules(tools=("chat.delete_channel",)),
        )
    )
    assert allowed(compiled, "chat.list_channels")
    decision = compiled.decide(BOT, "chat.delete_channel", {"channel": "general"})
    assert not decision.allowed
    assert decision.matched_rules == ("policy:daily-triage/deny/tools[0]",)
    assert decision.reasons == (
        "denied: tool chat.delete_channel is denied by policy 'daily-triage' (deny.tools[0])",
    )
    assert decision.tool is not None and decision.tool.exposed_name == "chat.delete_channel"


def test_deny_in_another_policy_wins_over_allow() -> None:
    compiled = build(
        policy("readers", allow=allow("tickets/*")),
        policy(
            "org-wide", consumer=None, subjects=Subjects(agents=("*",)), deny=allow("*/delete_*")
        ),
    )
    assert allowed(compiled, "tickets.update_ticket", id="1", status="done", comment="")
    assert not allowed(compiled, "tickets.delete_ticket", id="1")
    assert not allowed(compiled, "chat.delete_channel", channel="x")
    reasons = compiled.decide(BOT, "tickets.delete_ticket", {"id": "1"}).reasons
    assert reasons == (
        "denied: tool tickets.delete_ticket is denied by policy 'org-wide' (deny.tools[0])",
    )


def test_deny_by_group_and_by_server_cite_what_matched() -> None:
    compiled = build(
        policy(
            "p",
            allow=allow("*/*"),
            deny=ToolRules(tool_groups=("readers",), servers=("crm",)),
        )
    )
    assert not allowed(compiled, "notes.read_page", page="x")
    assert compiled.decide(BOT, "notes.read_page", {}).reasons == (
        "denied: tool notes.read_page is denied by policy 'p' (deny.toolGroups[0]: group 'readers')",
    )
    assert compiled.decide(BOT, "crm.export_all", {}).reasons == (
        "denied: tool crm.export_all is denied by policy 'p' (deny.servers[0]: server 'crm')",
    )
    assert allowed(compiled, "chat.list_channels")


@pytest.mark.parametrize(
    ("ref", "yes", "no"),
    [
        ("tickets/list_*", ["tickets.list_tickets", "tickets.list_open"], ["tickets.get_ticket"]),
        ("tickets.list_*", ["tickets.list_open"], ["chat.list_channels"]),
        ("chat/*", ["chat.post_message", "chat.delete_channel"], ["tickets.list_open"]),
        ("*/list_*", ["tickets.list_open", "chat.list_channels"], ["notes.read_page"]),
        (
            "tickets/get_ticket",
            ["tickets.get_ticket"],
            ["tickets.get_tickets", "tickets.list_open"],
        ),
        ("*_ticket", [], []),  # not a reference: rejected below, never a silent match-all
    ],
)
def test_patterns_match_whole_names_only(ref: str, yes: list[str], no: list[str]) -> None:
    if ref == "*_ticket":
        with pytest.raises(PolicyCompileError, match="names no tool"):
            build(policy(allow=allow(ref)))
        return
    compiled = build(policy(allow=allow(ref)))
    for name in yes:
        assert allowed(compiled, name), name
    for name in no:
        assert not allowed(compiled, name), name


def test_tool_groups_allow_their_members() -> None:
    compiled = build(policy(allow=allow(groups=("readers",))))
    assert allowed(compiled, "notes.read_page", page="home")
    assert allowed(compiled, "tickets.list_open")
    assert not allowed(compiled, "tickets.get_ticket", id="1")
    assert compiled.decide(BOT, "notes.read_page", {}).matched_rules == (
        "policy:p/allow/toolGroups[0]",
    )


def test_an_unknown_group_or_server_allows_nothing() -> None:
    compiled = build(policy(allow=allow(groups=("nope",), servers=("ghost",))))
    assert compiled.visible_tools(BOT) == []


# --------------------------------------------------------------------------- subjects


@pytest.mark.parametrize(
    ("subjects", "principal", "applies"),
    [
        (Subjects(agents=("triage-bot",)), BOT, True),
        (Subjects(agents=("triage-bot",)), OTHER, False),
        (Subjects(agents=("*",)), OTHER, True),
        (
            Subjects(teams=("support",)),
            Principal(org_id=1, agent_slug="x", team_slugs={"support"}),
            True,
        ),
        (
            Subjects(teams=("support",)),
            Principal(org_id=1, agent_slug="x", team_slugs={"sales"}),
            False,
        ),
        (
            Subjects(agent_tags=("prod",)),
            Principal(org_id=1, agent_slug="x", agent_tags={"prod"}),
            True,
        ),
        (
            Subjects(users=("Alice@Acme.test",)),
            Principal(org_id=1, agent_slug="x", user_email="alice@acme.test"),
            True,
        ),
        (
            Subjects(users=("alice@acme.test",)),
            Principal(org_id=1, agent_slug="x", user_email=None),
            False,
        ),
    ],
)
def test_subjects_decide_who_a_policy_applies_to(
    subjects: Subjects, principal: Principal, applies: bool
) -> None:
    compiled = build(PolicySpec(name="p", subjects=subjects, allow=allow("notes.read_page")))
    assert allowed(compiled, "notes.read_page", principal, page="x") is applies


def test_a_principal_of_another_organization_is_refused() -> None:
    compiled = build(policy(allow=allow("notes.read_page")), org_id=1)
    intruder = Principal(org_id=2, agent_id=10, agent_slug="triage-bot")
    decision = compiled.decide(intruder, "notes.read_page", {"page": "x"})
    assert not decision.allowed
    assert decision.reasons == (
        "denied: the caller belongs to another organization than this policy",
    )
    assert compiled.visible_tools(intruder) == []
    assert allowed(compiled, "notes.read_page", page="x")


# --------------------------------------------------------------------------- catalog state


def test_a_quarantined_tool_is_never_allowed_nor_listed() -> None:
    compiled = build(policy(allow=allow("crm.sync_contacts", "*/*", servers=("crm",))))
    decision = compiled.decide(BOT, "crm.sync_contacts", {})
    assert not decision.allowed
    assert decision.matched_rules == ("catalog:not-callable",)
    assert decision.reasons == (
        "denied: tool crm.sync_contacts is quarantined or its server version is not approved; "
        "no policy can allow it until an approver approves it",
    )
    assert "crm.sync_contacts" not in [t.name for t in compiled.visible_tools(BOT)]
    assert "crm.export_all" in [t.name for t in compiled.visible_tools(BOT)]


def test_an_unknown_tool_is_denied_without_a_tool_and_not_cached() -> None:
    compiled = build(policy(allow=allow("*/*")))
    for index in range(50):
        decision = compiled.decide(BOT, f"made.up_{index}", {})
        assert not decision.allowed and decision.tool is None
    assert decision.reasons == (
        "denied: tool 'made.up_49' does not exist in this organization's catalog",
    )
    view = compiled._views[BOT]
    assert not any(name.startswith("made.") for name in view.entries)


def test_the_decision_carries_the_real_tool_and_the_version_stamp() -> None:
    compiled = build(policy(allow=allow("tickets.get_ticket")), version="42")
    decision = compiled.decide(BOT, "tickets.get_ticket", {"id": "T-1"})
    assert decision.allowed and decision.error_class is None
    assert decision.policy_version == "42" == compiled.version
    assert decision.tool is not None
    assert (decision.tool.server, decision.tool.name) == ("tickets", "get_ticket")
    assert decision.tool.definition_hash == "sha256:tickets.get_ticket"
    assert decision.tool.server_version_id == "tickets-v1"
    assert decision.reasons == (
        "allowed: tool tickets.get_ticket is allowed by policy 'p' (allow.tools[0])",
    )


# --------------------------------------------------------------------------- argument rules


def test_enum_rule_refuses_other_values_as_a_validation_error() -> None:
    compiled = build(
        policy(
            "daily-triage",
            allow=allow("chat.post_message"),
            arguments=(
                args("chat.post_message", ArgumentRule(argument="channel", enum=("triage", "ops"))),
            ),
        )
    )
    assert allowed(compiled, "chat.post_message", channel="ops", text="hi")
    decision = compiled.decide(BOT, "chat.post_message", {"channel": "general", "text": "hi"})
    assert not decision.allowed
    assert decision.error_class == "validation"
    assert decision.matched_rules == (
        "policy:daily-triage/arguments/chat.post_message/channel/enum",
    )
    assert decision.reasons == (
        "denied: argument 'channel' must be one of 'triage', 'ops' "
        "(policy 'daily-triage', arguments[\"chat.post_message\"].channel.enum)",
    )


def test_enum_does_not_confuse_booleans_and_numbers() -> None:
    compiled = build(
        policy(
            allow=allow("chat.post_message"),
            arguments=(args("chat.post_message", ArgumentRule(argument="urgent", enum=(False,))),),
        )
    )
    assert allowed(compiled, "chat.post_message", urgent=False)
    assert not allowed(compiled, "chat.post_message", urgent=0)
    assert not allowed(compiled, "chat.post_message", urgent=[False])


def test_pattern_must_match_the_whole_value() -> None:
    compiled = build(
        policy(
            allow=allow("tickets.get_ticket"),
            arguments=(
                args("tickets.get_ticket", ArgumentRule(argument="id", pattern=r"T-[0-9]{1,6}")),
            ),
        )
    )
    assert allowed(compiled, "tickets.get_ticket", id="T-123")
    assert not allowed(compiled, "tickets.get_ticket", id="T-123; DROP TABLE")
    assert not allowed(compiled, "tickets.get_ticket", id="xT-1")
    decision = compiled.decide(BOT, "tickets.get_ticket", {"id": 5})
    assert decision.reasons[0].startswith(
        "denied: argument 'id' must be a string matching 'T-[0-9]{1,6}'"
    )


def test_pattern_refuses_values_too_long_to_check_safely() -> None:
    compiled = build(
        policy(
            allow=allow("chat.post_message"),
            arguments=(
                args("chat.post_message", ArgumentRule(argument="text", pattern="[a-z ]*")),
            ),
        )
    )
    decision = compiled.decide(BOT, "chat.post_message", {"text": "a" * 5000})
    assert not decision.allowed
    assert (
        "too long to check against its pattern (5000 characters; the limit is 4096)"
        in decision.reasons[0]
    )


@pytest.mark.parametrize("pattern", ["(a+)+$", "(x*)*y", "([a-z]+\\.)+com", "(a)\\1"])
def test_catastrophic_patterns_are_refused_at_compile_time(pattern: str) -> None:
    spec = policy(
        arguments=(args("chat.post_message", ArgumentRule(argument="text", pattern=pattern)),)
    )
    with pytest.raises(PolicyCompileError) as caught:
        build(spec)
    error = caught.value.errors[0]
    assert error.location == 'policies[0].arguments["chat.post_message"].text.pattern'
    assert "exponential time" in error.message


def test_max_length_and_numeric_range() -> None:
    compiled = build(
        policy(
            allow=allow("chat.post_message", "tickets.list_tickets"),
            arguments=(
                args("chat.post_message", ArgumentRule(argument="text", max_length=10)),
                args("tickets.list_tickets", ArgumentRule(argument="limit", minimum=1, maximum=50)),
            ),
        )
    )
    assert allowed(compiled, "chat.post_message", text="0123456789")
    decision = compiled.decide(BOT, "chat.post_message", {"text": "0123456789!"})
    assert "argument 'text' must be at most 10 characters long (it has 11)" in decision.reasons[0]
    assert allowed(compiled, "tickets.list_tickets", limit=50)
    assert not allowed(compiled, "tickets.list_tickets", limit=51)
    assert not allowed(compiled, "tickets.list_tickets", limit=0)
    assert not allowed(compiled, "tickets.list_tickets", limit=True)  # a boolean is not a number
    assert not allowed(compiled, "tickets.list_tickets", limit=float("nan"))
    assert allowed(compiled, "tickets.list_tickets")  # absent: the rule has nothing to check


def test_required_rule_and_every_failure_is_reported() -> None:
    compiled = build(
        policy(
            allow=allow("tickets.update_ticket"),
            arguments=(
                args(
                    "tickets.update_ticket",
                    ArgumentRule(argument="comment", required=True),
                    ArgumentRule(argument="status", enum=("open", "done")),
                ),
            ),
        )
    )
    decision = compiled.decide(BOT, "tickets.update_ticket", {"id": "1", "status": "deleted"})
    assert [r.split(" (policy")[0] for r in decision.reasons] == [
        "denied: argument 'comment' is required",
        "denied: argument 'status' must be one of 'open', 'done'",
    ]


def test_argument_rules_of_every_applicable_policy_must_hold() -> None:
    # An org-wide guard rail that grants nothing still constrains every grant.
    compiled = build(
        policy("team", allow=allow("chat.post_message")),
        PolicySpec(
            name="guard",
            subjects=Subjects(agents=("*",)),
            arguments=(args("chat/*", ArgumentRule(argument="text", max_length=5)),),
        ),
    )
    assert allowed(compiled, "chat.post_message", text="short")
    decision = compiled.decide(BOT, "chat.post_message", {"text": "far too long"})
    assert not decision.allowed and decision.error_class == "validation"
    assert "policy 'guard'" in decision.reasons[0]


def test_arguments_that_are_not_an_object_are_refused() -> None:
    compiled = build(policy(allow=allow("chat.list_channels")))
    decision = compiled.decide(BOT, "chat.list_channels", ["not", "an", "object"])  # type: ignore[arg-type]
    assert not decision.allowed and decision.error_class == "validation"
    assert allowed(compiled, "chat.list_channels")
    assert compiled.decide(BOT, "chat.list_channels", None).allowed


# --------------------------------------------------------------------------- pins


def test_pins_are_merged_over_what_the_agent_sent_and_recorded() -> None:
    compiled = build(
        policy(
            allow=allow("chat.post_message"),
            arguments=(
                args("chat.post_message", ArgumentRule(argument="channel", pinned=Pin("triage"))),
            ),
        )
    )
    sent = {"channel": "general", "text": "hi"}
    decision = compiled.decide(BOT, "chat.post_message", sent)
    assert decision.allowed
    assert decision.effective_arguments == {"channel": "triage", "text": "hi"}
    assert sent == {"channel": "general", "text": "hi"}  # the caller's dict is not touched
    (pin,) = decision.pins
    assert (pin.argument, pin.value, pin.replaced) == ("channel", "triage", True)
    assert pin.rule == "policy:p/arguments/chat.post_message/channel/pinned"
    assert decision.reasons[-1] == (
        "pinned: argument 'channel' is set to 'triage' by policy 'p' "
        '(arguments["chat.post_message"].channel.pinned); the agent\'s value was replaced'
    )
    quiet = compiled.decide(BOT, "chat.post_message", {"text": "hi"})
    assert quiet.pins[0].replaced is False
    assert quiet.effective_arguments == {"text": "hi", "channel": "triage"}


def test_a_pinned_object_is_copied_into_each_call() -> None:
    compiled = build(
        policy(
            allow=allow("crm.export_all"),
            arguments=(
                args(
                    "crm.export_all", ArgumentRule(argument="format", pinned=Pin({"kind": "csv"}))
                ),
            ),
        )
    )
    first = compiled.decide(BOT, "crm.export_all", {})
    first.effective_arguments["format"]["kind"] = "everything"
    assert compiled.decide(BOT, "crm.export_all", {}).effective_arguments == {
        "format": {"kind": "csv"}
    }


def test_pinned_arguments_are_hidden_from_the_listed_schema() -> None:
    compiled = build(
        policy(
            allow=allow("chat.post_message"),
            arguments=(
                args("chat.post_message", ArgumentRule(argument="channel", pinned=Pin("triage"))),
            ),
        )
    )
    (listed,) = compiled.visible_tools(BOT)
    assert listed.name == "chat.post_message"
    assert set(listed.input_schema["properties"]) == {"text", "urgent"}
    assert listed.input_schema["required"] == ["text", "urgent"]
    # The catalog's own schema is untouched for everyone else.
    assert "channel" in SNAPSHOT.tools[5].input_schema["properties"]


def test_the_most_specific_pin_wins() -> None:
    compiled = build(
        policy(
            allow=allow("chat/*"),
            arguments=(
                args("*/post_*", ArgumentRule(argument="channel", pinned=Pin("across"))),
                args("chat/*", ArgumentRule(argument="channel", pinned=Pin("server"))),
                args("chat/post_*", ArgumentRule(argument="channel", pinned=Pin("pattern"))),
                args("chat.post_message", ArgumentRule(argument="channel", pinned=Pin("tool"))),
            ),
        )
    )
    decision = compiled.decide(BOT, "chat.post_message", {"text": "x"})
    assert decision.effective_arguments["channel"] == "tool"
    assert compiled.decide(BOT, "chat.delete_channel", {})
    assert compiled.decide(BOT, "chat.delete_channel", {}).effective_arguments == {
        "channel": "server"
    }


def test_equal_pins_from_two_policies_agree() -> None:
    same = args("chat.post_message", ArgumentRule(argument="channel", pinned=Pin("triage")))
    compiled = build(
        policy("a", allow=allow("chat.post_message"), arguments=(same,)),
        policy("b", arguments=(same,)),
    )
    assert compiled.decide(BOT, "chat.post_message", {}).effective_arguments == {
        "channel": "triage"
    }


def test_conflicting_pins_of_equal_specificity_fail_compilation_with_the_location() -> None:
    with pytest.raises(PolicyCompileError) as caught:
        build(
            policy(
                "a",
                allow=allow("chat.post_message"),
                arguments=(
                    args(
                        "chat.post_message", ArgumentRule(argument="channel", pinned=Pin("triage"))
                    ),
                ),
            ),
            policy(
                "b",
                arguments=(
                    args(
                        "chat/post_message", ArgumentRule(argument="channel", pinned=Pin("general"))
                    ),
                ),
            ),
        )
    (error,) = caught.value.errors
    assert error.location == 'policies[1].arguments["chat/post_message"].channel.pinned'
    assert error.message == (
        "pins argument 'channel' of chat.post_message to 'general', but policy 'a' "
        "(arguments[\"chat.post_message\"].channel.pinned) pins it to 'triage' with the same "
        "specificity (one tool); make one pin more specific or remove one"
    )


def test_conflicting_pins_inside_one_policy_are_an_error_too() -> None:
    with pytest.raises(
        PolicyCompileError, match="same specificity \\(a pattern within one server\\)"
    ):
        build(
            policy(
                arguments=(
                    args("tickets/list_*", ArgumentRule(argument="status", pinned=Pin("open"))),
                    args("tickets/*_tickets", ArgumentRule(argument="status", pinned=Pin("all"))),
                )
            )
        )


def test_a_conflict_that_shows_only_for_some_principals_denies_their_call() -> None:
    # Team and tag policies: compile cannot know who is in both, so the call fails closed.
    compiled = build(
        PolicySpec(
            name="support",
            subjects=Subjects(teams=("support",)),
            allow=allow("chat.post_message"),
            arguments=(
                args("chat.post_message", ArgumentRule(argument="channel", pinned=Pin("support"))),
            ),
        ),
        PolicySpec(
            name="prod",
            subjects=Subjects(agent_tags=("prod",)),
            arguments=(
                args("chat.post_message", ArgumentRule(argument="channel", pinned=Pin("prod"))),
            ),
        ),
    )
    only_team = Principal(org_id=1, agent_slug="a", team_slugs={"support"})
    both = Principal(org_id=1, agent_slug="b", team_slugs={"support"}, agent_tags={"prod"})
    assert compiled.decide(only_team, "chat.post_message", {}).effective_arguments == {
        "channel": "support"
    }
    decision = compiled.decide(both, "chat.post_message", {"channel": "x"})
    assert not decision.allowed and decision.error_class == "policy"
    assert decision.reasons == (
        "denied: policy 'support' (arguments[\"chat.post_message\"].channel.pinned) and policy "
        "'prod' (arguments[\"chat.post_message\"].channel.pinned) pin argument 'channel' of "
        "chat.post_message to different values with the same specificity; an admin must "
        "resolve the conflict",
    )
    assert compiled.visible_tools(both) == []


def test_non_strict_compile_keeps_the_conflict_as_a_problem_and_fails_closed() -> None:
    compiled = build(
        policy(
            "a",
            allow=allow("chat.post_message", "chat.list_channels"),
            arguments=(
                args("chat.post_message", ArgumentRule(argument="channel", pinned=Pin("x"))),
            ),
        ),
        policy(
            "b",
            arguments=(
                args("chat.post_message", ArgumentRule(argument="channel", pinned=Pin("y"))),
            ),
        ),
        strict=False,
    )
    assert [p.location for p in compiled.problems] == [
        'policies[1].arguments["chat.post_message"].channel.pinned'
    ]
    assert not allowed(compiled, "chat.post_message")
    assert allowed(compiled, "chat.list_channels")


# --------------------------------------------------------------------------- overrides


TRIAGE_POST = Override(
    name="chat.post_to_triage",
    tool="chat.post_message",
    title="Post to #triage",
    description="Post a message to the #triage channel.",
    pin={"channel": "triage"},
)


def test_an_override_exposes_a_safe_variant_with_its_pin() -> None:
    compiled = build(policy("daily-triage", overrides=(TRIAGE_POST,)))
    names = [t.name for t in compiled.visible_tools(BOT)]
    assert names == ["chat.post_to_triage"]  # the raw tool is not granted
    (listed,) = compiled.visible_tools(BOT)
    assert listed.title == "Post to #triage"
    assert listed.description == "Post a message to the #triage channel."
    assert "channel" not in listed.input_schema["properties"]
    assert listed.annotations == {"readOnlyHint": False}
    decision = compiled.decide(BOT, "chat.post_to_triage", {"channel": "general", "text": "hi"})
    assert decision.allowed
    assert decision.tool is not None and decision.tool.exposed_name == "chat.post_message"
    assert decision.effective_arguments == {"channel": "triage", "text": "hi"}
    assert decision.reasons[0] == (
        "allowed: tool chat.post_to_triage (a variant of chat.post_message) is allowed by "
        "policy 'daily-triage' (overrides[0])"
    )
    assert not allowed(compiled, "chat.post_message", channel="general", text="hi")


def test_an_override_pin_beats_a_tool_pin_and_the_real_tools_rules_still_apply() -> None:
    compiled = build(
        policy(
            overrides=(TRIAGE_POST,),
            arguments=(
                args(
                    "chat.post_message",
                    ArgumentRule(argument="channel", pinned=Pin("general")),
                    ArgumentRule(argument="text", max_length=3),
                ),
            ),
        )
    )
    assert compiled.decide(BOT, "chat.post_to_triage", {"text": "hi"}).effective_arguments == {
        "text": "hi",
        "channel": "triage",
    }
    assert not allowed(compiled, "chat.post_to_triage", text="too long")


def test_denying_the_real_tool_also_denies_its_variants() -> None:
    compiled = build(
        policy("daily-triage", overrides=(TRIAGE_POST,)),
        PolicySpec(
            name="freeze", subjects=Subjects(agents=("*",)), deny=allow("chat.post_message")
        ),
    )
    decision = compiled.decide(BOT, "chat.post_to_triage", {"text": "hi"})
    assert not decision.allowed
    assert decision.reasons == (
        "denied: tool chat.post_to_triage (a variant of chat.post_message) is denied by "
        "policy 'freeze' (deny.tools[0])",
    )


def test_an_override_is_granted_only_to_its_policys_subjects() -> None:
    compiled = build(policy("daily-triage", overrides=(TRIAGE_POST,)))
    assert allowed(compiled, "chat.post_to_triage", BOT, text="x")
    assert not allowed(compiled, "chat.post_to_triage", OTHER, text="x")
    assert compiled.visible_tools(OTHER) == []


def test_an_override_may_not_take_a_catalog_tools_name() -> None:
    clash = Override(name="chat.delete_channel", tool="chat.post_message")
    with pytest.raises(PolicyCompileError, match="has the name of a catalog tool"):
        build(policy(overrides=(clash,)))


def test_one_override_name_with_two_definitions_is_refused() -> None:
    other = Override(name="chat.post_to_triage", tool="chat.post_message", pin={"channel": "ops"})
    with pytest.raises(PolicyCompileError, match="also defined, differently, by policy 'a'"):
        build(policy("a", overrides=(TRIAGE_POST,)), policy("b", overrides=(other,)))
    compiled = build(
        policy("a", overrides=(TRIAGE_POST,)), policy("b", overrides=(other,)), strict=False
    )
    assert not allowed(compiled, "chat.post_to_triage", text="x")  # fail closed: not exposed


def test_an_override_of_a_quarantined_tool_is_quarantined_too() -> None:
    variant = Override(name="crm.sync_mine", tool="crm.sync_contacts")
    compiled = build(policy(overrides=(variant,)))
    decision = compiled.decide(BOT, "crm.sync_mine", {})
    assert not decision.allowed and decision.matched_rules == ("catalog:not-callable",)


# --------------------------------------------------------------------------- toolsets and tools/list


def test_visible_tools_are_sorted_and_restricted_to_a_toolset() -> None:
    compiled = build(policy(allow=allow("tickets/*", "notes.read_page"), overrides=(TRIAGE_POST,)))
    everything = [t.name for t in compiled.visible_tools(BOT)]
    assert everything == sorted(everything)
    assert "tickets.delete_ticket" in everything
    toolset = [t.name for t in compiled.visible_tools(BOT, "daily-triage")]
    assert toolset == [
        "chat.post_to_triage",
        "tickets.get_ticket",
        "tickets.list_open",
        "tickets.list_tickets",
    ]
    assert compiled.visible_tools(BOT, "no-such-toolset") == []
    assert compiled.toolsets == frozenset({"daily-triage", "readers"})


def test_a_call_through_a_toolset_only_reaches_its_tools() -> None:
    compiled = build(policy(allow=allow("tickets/*")))
    assert compiled.decide(BOT, "tickets.get_ticket", {"id": "1"}, toolset="daily-triage").allowed
    decision = compiled.decide(BOT, "tickets.delete_ticket", {"id": "1"}, toolset="daily-triage")
    assert not decision.allowed
    assert decision.reasons == ("denied: toolset 'daily-triage' does not include this tool",)
    unknown = compiled.decide(BOT, "tickets.get_ticket", {"id": "1"}, toolset="ghost")
    assert unknown.reasons == ("denied: toolset 'ghost' does not exist",)


def test_a_toolset_does_not_grant_anything_by_itself() -> None:
    compiled = build(policy(allow=allow("notes.read_page")))
    assert [t.name for t in compiled.visible_tools(BOT, "daily-triage")] == []


def test_visible_tools_are_cached_per_principal_and_isolated() -> None:
    compiled = build(
        policy(allow=allow("tickets/*")), policy("o", consumer="other-bot", allow=allow("notes/*"))
    )
    first = compiled.visible_tools(BOT)
    assert compiled.visible_tools(BOT) == first
    assert [t.name for t in compiled.visible_tools(OTHER)] == ["notes.read_page"]
    first.clear()  # a caller mutating its list does not touch the cache
    assert len(compiled.visible_tools(BOT)) == 5


# --------------------------------------------------------------------------- limits, redaction, egress


def test_limits_carry_scope_keys_per_principal() -> None:
    compiled = build(
        policy(
            "daily-triage",
            allow=allow("chat/*"),
            limits=Limits(
                per_minute=120,
                per_day=5000,
                per_tool=(ToolLimit(tool="chat.post_message", per_minute=5),),
            ),
        )
    )
    alice = Principal(org_id=7, agent_id=10, agent_slug="triage-bot", user_id=3, user_email="a@x")
    compiled_org7 = compiled
    decision = compiled_org7.decide(alice, "chat.post_message", {})
    assert [(limit.key, limit.max_calls, limit.window_seconds) for limit in decision.limits] == [
        ("org:7:policy:daily-triage:agent:10:user:3:minute", 120, 60),
        ("org:7:policy:daily-triage:agent:10:user:3:day", 5000, 86400),
        ("org:7:policy:daily-triage:agent:10:user:3:perTool[0]:chat.post_message:minute", 5, 60),
    ]
    assert (
        decision.limits[2].rule
        == "policy:daily-triage/limits/perTool/chat.post_message/rateLimitPerMinute"
    )
    assert len(compiled.decide(alice, "chat.list_channels", {}).limits) == 2


def test_organization_wide_limits_share_one_counter() -> None:
    compiled = build(
        PolicySpec(
            name="cap",
            subjects=Subjects(agents=("*",)),
            limits=Limits(per_minute=1000, per="organization"),
        ),
        policy("work", allow=allow("notes.read_page")),
        policy("other", consumer="other-bot", allow=allow("notes.read_page")),
    )
    keys = {compiled.decide(p, "notes.read_page", {}).limits[0].key for p in (BOT, OTHER)}
    assert keys == {"org:1:policy:cap:org:minute"}


def test_a_policy_limit_only_counts_the_tools_it_grants() -> None:
    compiled = build(
        policy("a", allow=allow("notes.read_page"), limits=Limits(per_minute=1)),
        policy("b", allow=allow("chat.list_channels")),
    )
    assert compiled.decide(BOT, "chat.list_channels", {}).limits == ()
    assert len(compiled.decide(BOT, "notes.read_page", {}).limits) == 1


def test_redaction_unites_the_applicable_policies() -> None:
    compiled = build(
        policy("a", allow=allow("chat.post_message"), redact=Redaction(arguments=("text",))),
        PolicySpec(
            name="pii",
            subjects=Subjects(agents=("*",)),
            redact=Redaction(arguments=("text", "user.email"), results=("items.*.email",)),
        ),
    )
    redaction = compiled.decide(BOT, "chat.post_message", {}).redaction
    assert redaction.arguments == ("text", "user.email")
    assert redaction.results == ("items.*.email",)
    # Denied calls are audited too: the same masks apply.
    assert compiled.decide(BOT, "chat.delete_channel", {}).redaction == redaction


def test_outbound_domains_follow_the_grants() -> None:
    compiled = build(
        policy(
            "a",
            allow=allow("chat.post_message"),
            outbound=Outbound(allow_domains=("API.Slack.com",)),
        ),
        policy(
            "b",
            consumer="other-bot",
            allow=allow("chat.list_channels", "notes.read_page"),
            outbound=Outbound(allow_domains=("files.slack.com",)),
        ),
    )
    assert compiled.outbound_domains("chat") == frozenset({"api.slack.com", "files.slack.com"})
    assert compiled.outbound_domains("tickets") == frozenset()
    assert compiled.decide(BOT, "chat.post_message", {}).outbound_domains == frozenset(
        {"api.slack.com"}
    )


# --------------------------------------------------------------------------- compile errors


def test_an_invalid_spec_is_refused_rather_than_skipped() -> None:
    # Skipping a broken policy could silently drop a deny: the whole compile fails instead.
    broken = PolicySpec(name="freeze", subjects=Subjects(agents=("*",)), deny=allow("chat"))
    with pytest.raises(PolicyCompileError) as caught:
        build(policy(allow=allow("chat/*")), broken)
    assert caught.value.errors[0].location == "policies[1].deny.tools[0]"


def test_duplicate_policy_names_are_refused() -> None:
    with pytest.raises(PolicyCompileError, match="policy name 'p' is used twice"):
        build(policy("p"), policy("p"))


def test_redaction_paths_mask_fields_without_touching_the_original() -> None:
    compiled = build(
        policy(
            allow=allow("chat.post_message"),
            redact=Redaction(arguments=("password", "user.email"), results=("items.*.token",)),
        )
    )
    redaction = compiled.decide(BOT, "chat.post_message", {}).redaction
    sent = {"text": "hi", "user": {"email": "a@x", "name": "A"}, "auth": [{"password": "s3"}]}
    assert redact(sent, redaction.arguments) == {
        "text": "hi",
        "user": {"email": "[REDACTED]", "name": "A"},
        "auth": [{"password": "[REDACTED]"}],
    }
    assert sent["user"]["email"] == "a@x" and sent["auth"][0]["password"] == "s3"
    result = {"items": [{"token": "t1", "id": 1}, {"id": 2}], "token": "top"}
    assert redact(result, redaction.results) == {
        "items": [{"token": "[REDACTED]", "id": 1}, {"id": 2}],
        "token": "top",  # a dotted path is anchored at the top
    }


def test_a_disabled_policy_grants_and_denies_nothing() -> None:
    granting = policy("grant", allow=allow("tickets.get_ticket", "tickets.delete_ticket"))
    deny = policy("deny", deny=allow("tickets.delete_ticket"), enabled=False)
    compiled = build(granting, deny)
    assert allowed(compiled, "tickets.delete_ticket", id="T-1")
    compiled = build(replace(granting, enabled=False), deny)
    assert not allowed(compiled, "tickets.get_ticket", id="T-1")
    assert compiled.visible_tools(BOT) == []
