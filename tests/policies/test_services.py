"""Policy writes: apply a YAML document (dry run, diff, atomic apply, audit, version bump),
save / enable / delete one policy, tool groups; bad input changes nothing."""

import pytest

from audit.models import AuditEvent
from policies import services
from policies.errors import PolicyDocumentError
from policies.models import Policy, PolicyRevision, ToolGroup
from policies.selectors import compiled_policy_for, principal_for_agent
from tenants.errors import PermissionDeniedError
from tenants.models import Organization
from tests.factories import AgentFactory, OrganizationFactory, TeamFactory
from tests.policies.factories import approved_server

SEED = """\
toolGroups:
  daily-triage: ["tickets/list_*", "tickets.get_ticket", "tickets.update_ticket", "chat.post_to_triage"]
policies:
  - name: daily-triage
    consumer: triage-bot
    allow:
      toolGroups: ["daily-triage"]
    deny:
      tools: ["chat.delete_channel", "tickets.delete_ticket"]
    overrides:
      - name: chat.post_to_triage
        tool: chat.post_message
        description: "Post a message to #triage"
        pin:
          channel: "triage"
    limits:
      rateLimitPerMinute: 120
"""


@pytest.fixture
def catalog(org_a):
    approved_server(org_a, "tickets")
    approved_server(org_a, "chat")
    return org_a


@pytest.fixture
def triage_bot(org_a):
    return AgentFactory(organization=org_a, slug="triage-bot", tags=["triage"])


def _version(org) -> int:
    return Organization.objects.get(pk=org.pk).policy_version


def test_apply_dry_run_shows_diff_and_writes_nothing(catalog, triage_bot, alice, row_counts):
    before = row_counts()
    result = services.policy_apply(org=catalog, actor=alice, text=SEED, dry_run=True)
    assert result.errors == []
    assert not result.applied
    assert "+ tool group 'daily-triage' added: " in result.diff[0]
    assert "+ policy 'daily-triage' added" in result.diff
    assert row_counts() == before


def test_apply_writes_groups_policies_revisions_audit_and_bumps_version(catalog, triage_bot, alice):
    version = _version(catalog)
    result = services.policy_apply(org=catalog, actor=alice, text=SEED, dry_run=False)
    assert result.applied, result.errors
    assert result.changes == ["tool group 'daily-triage' created", "policy 'daily-triage' created"]
    policy = Policy.objects.get(organization=catalog, name="daily-triage")
    assert policy.spec["consumer"] == "triage-bot"
    assert policy.created_by == alice
    assert ToolGroup.objects.get(organization=catalog).tools[0] == "tickets/list_*"
    assert _version(catalog) == version + 1
    assert PolicyRevision.objects.filter(organization=catalog).count() == 2
    event = AuditEvent.objects.get(organization=catalog, action="policy.created")
    assert event.details["before"] is None
    assert event.details["after"]["spec"]["allow"] == {"toolGroups": ["daily-triage"]}
    assert AuditEvent.objects.filter(organization=catalog, action="policy.applied").exists()

    compiled = compiled_policy_for(catalog)
    principal = principal_for_agent(triage_bot)
    assert compiled.decide(principal, "tickets.get_ticket", {"ticket_id": "T-1"}).allowed
    assert not compiled.decide(principal, "tickets.delete_ticket", {"ticket_id": "T-1"}).allowed
    post = compiled.decide(principal, "chat.post_to_triage", {"text": "hi", "channel": "x"})
    assert post.allowed
    assert post.effective_arguments["channel"] == "triage"


def test_apply_twice_changes_nothing_the_second_time(catalog, triage_bot, alice):
    services.policy_apply(org=catalog, actor=alice, text=SEED, dry_run=False)
    version = _version(catalog)
    again = services.policy_apply(org=catalog, actor=alice, text=SEED, dry_run=False)
    assert again.applied and again.changes == [] and again.diff == []
    assert _version(catalog) == version


def test_export_round_trips_exactly(catalog, triage_bot, alice):
    services.policy_apply(org=catalog, actor=alice, text=SEED, dry_run=False)
    exported = services.policy_export(org=catalog)
    result = services.policy_apply(org=catalog, actor=alice, text=exported, dry_run=True)
    assert result.errors == [] and result.diff == []
    services.policy_apply(org=catalog, actor=alice, text=exported, dry_run=False)
    assert services.policy_export(org=catalog) == exported


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("consumer: [unclosed", "", "YAML"),
        ("a: &x [1]\nb: *x\n", "", "anchors"),
        (
            "consumer: triage-bot\nallow:\n  tools: [tickets.get_ticket]\nsurprise: 1\n",
            "surprise",
            "unknown",
        ),
        ("consumer: triage-bot\nallow:\n  tools: tickets.get_ticket\n", "allow.tools", "list"),
        ("consumer: triage-bot\nallow:\n  tools: [tickets.nope]\n", "allow.tools[0]", "nope"),
        (
            "consumer: ghost-agent\nallow:\n  tools: [tickets.get_ticket]\n",
            "consumer",
            "ghost-agent",
        ),
        (
            "consumer: triage-bot\nallow:\n  toolGroups: [missing]\n",
            "allow.toolGroups[0]",
            "missing",
        ),
        (
            "consumer: triage-bot\nallow:\n  tools: [tickets.get_ticket]\narguments:\n"
            "  tickets.get_ticket:\n    colour: {enum: [red]}\n",
            'arguments["tickets.get_ticket"].colour',
            "colour",
        ),
        (
            "consumer: triage-bot\nallow:\n  tools: [tickets.get_ticket]\narguments:\n"
            "  tickets.get_ticket:\n    ticket_id: {pattern: '(a+)+'}\n",
            'arguments["tickets.get_ticket"].ticket_id.pattern',
            "exponential",
        ),
        (
            "consumer: triage-bot\nallow:\n  tools: [globex.secret_tool]\n",
            "allow.tools[0]",
            "globex",
        ),
    ],
)
def test_bad_documents_get_located_errors_and_change_nothing(
    catalog, triage_bot, alice, row_counts, text, where, words
):
    approved_server(OrganizationFactory(slug="globex-org"), "globex", {"secret_tool": {}})
    before = row_counts()
    result = services.policy_apply(org=catalog, actor=alice, text=text, dry_run=False)
    assert not result.applied
    assert result.errors, "expected an error"
    assert any(e.location == where and words.lower() in str(e).lower() for e in result.errors), [
        str(e) for e in result.errors
    ]
    assert row_counts() == before


def test_huge_and_bomb_documents_are_refused_cleanly(catalog, alice, row_counts):
    before = row_counts()
    huge = "consumer: triage-bot\ndescription: '" + "x" * 300_000 + "'\n"
    result = services.policy_apply(org=catalog, actor=alice, text=huge, dry_run=False)
    assert "256 KiB" in str(result.errors[0])
    bomb = (
        "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b]\n"
    )
    result = services.policy_apply(org=catalog, actor=alice, text=bomb, dry_run=False)
    assert result.errors and not result.applied
    assert row_counts() == before


def test_contradictory_pins_across_policies_are_refused(catalog, triage_bot, alice, row_counts):
    services.policy_apply(org=catalog, actor=alice, text=SEED, dry_run=False)
    first = (
        "name: pin-a\nsubjects:\n  agentTags: [triage]\nallow:\n  tools: [chat.post_message]\n"
        "arguments:\n  chat.post_message:\n    channel: {pinned: general}\n"
    )
    assert services.policy_apply(org=catalog, actor=alice, text=first, dry_run=False).applied
    before = row_counts()
    second = first.replace("pin-a", "pin-b").replace("general", "random")
    result = services.policy_apply(org=catalog, actor=alice, text=second, dry_run=False)
    assert not result.applied
    assert any("pins argument 'channel'" in e.message for e in result.errors), result.errors
    assert row_counts() == before


def test_dry_run_needs_read_and_apply_needs_edit(catalog, member_with_role, row_counts):
    auditor, member = member_with_role("auditor"), member_with_role("member")
    assert services.policy_apply(org=catalog, actor=auditor, text=SEED, dry_run=True).diff
    before = row_counts()
    with pytest.raises(PermissionDeniedError):
        services.policy_apply(org=catalog, actor=auditor, text=SEED, dry_run=False)
    with pytest.raises(PermissionDeniedError):
        services.policy_apply(org=catalog, actor=member, text=SEED, dry_run=True)
    assert row_counts() == before


def test_prune_removes_what_the_document_no_longer_names(catalog, triage_bot, alice):
    services.policy_apply(org=catalog, actor=alice, text=SEED, dry_run=False)
    only_reader = (
        "name: readers\nsubjects:\n  agents: ['*']\nallow:\n  tools: [tickets.get_ticket]\n"
    )
    plan = services.policy_apply(
        org=catalog, actor=alice, text=only_reader, dry_run=True, prune=True
    )
    assert "- policy 'daily-triage' removed" in plan.diff
    assert "- tool group 'daily-triage' removed" in plan.diff
    result = services.policy_apply(
        org=catalog, actor=alice, text=only_reader, dry_run=False, prune=True
    )
    assert result.applied
    assert list(Policy.objects.filter(organization=catalog).values_list("name", flat=True)) == [
        "readers"
    ]
    assert not ToolGroup.objects.filter(organization=catalog).exists()
    deleted = AuditEvent.objects.get(organization=catalog, action="policy.deleted")
    assert deleted.details["before"]["name"] == "daily-triage"


def test_policy_save_from_yaml_then_update_keeps_history(catalog, triage_bot, alice):
    text = "consumer: triage-bot\nallow:\n  tools: [tickets.get_ticket]\n"
    policy = services.policy_save(org=catalog, actor=alice, text=text)
    assert policy.name == "triage-bot" and policy.revision == 1
    policy = services.policy_save(
        org=catalog, actor=alice, policy=policy, text=text.replace("get_ticket", "list_tickets")
    )
    assert policy.revision == 2
    revisions = list(policy.revisions.order_by("id"))
    assert [r.action for r in revisions] == ["created", "updated"]
    assert revisions[1].before["spec"]["allow"]["tools"] == ["tickets.get_ticket"]
    assert revisions[1].after["spec"]["allow"]["tools"] == ["tickets.list_tickets"]
    principal = principal_for_agent(triage_bot)
    assert compiled_policy_for(catalog).decide(principal, "tickets.list_tickets", {}).allowed


def test_disabled_policy_grants_nothing_until_enabled(
    catalog, triage_bot, alice, django_capture_on_commit_callbacks
):
    text = "consumer: triage-bot\nallow:\n  tools: [tickets.get_ticket]\n"
    principal = principal_for_agent(triage_bot)
    with django_capture_on_commit_callbacks(execute=True):
        policy = services.policy_save(org=catalog, actor=alice, text=text)
    assert compiled_policy_for(catalog).decide(principal, "tickets.get_ticket", {}).allowed
    with django_capture_on_commit_callbacks(execute=True):
        services.policy_set_enabled(org=catalog, actor=alice, policy=policy, enabled=False)
    assert not compiled_policy_for(catalog).decide(principal, "tickets.get_ticket", {}).allowed
    with django_capture_on_commit_callbacks(execute=True):
        services.policy_set_enabled(org=catalog, actor=alice, policy=policy, enabled=True)
    assert compiled_policy_for(catalog).decide(principal, "tickets.get_ticket", {}).allowed


def test_editor_refuses_a_document_with_several_policies(catalog, triage_bot, alice, row_counts):
    before = row_counts()
    with pytest.raises(PolicyDocumentError) as info:
        services.policy_save(org=catalog, actor=alice, text=SEED)
    assert "exactly one policy" in str(info.value)
    assert row_counts() == before


def test_tool_group_in_use_cannot_be_deleted_or_renamed(catalog, triage_bot, alice, row_counts):
    services.policy_apply(org=catalog, actor=alice, text=SEED, dry_run=False)
    group = ToolGroup.objects.get(organization=catalog, slug="daily-triage")
    before = row_counts()
    with pytest.raises(PolicyDocumentError) as info:
        services.tool_group_delete(org=catalog, actor=alice, group=group)
    assert "used by policy 'daily-triage'" in str(info.value)
    with pytest.raises(PolicyDocumentError):
        services.tool_group_save(
            org=catalog, actor=alice, group=group, slug="renamed", tools=list(group.tools)
        )
    assert row_counts() == before


def test_tool_group_crud_bumps_version_and_audits(catalog, alice):
    version = _version(catalog)
    group = services.tool_group_save(
        org=catalog, actor=alice, slug="readers", name="Readers", tools=["tickets/get_*"]
    )
    assert group.name == "Readers" and _version(catalog) == version + 1
    group = services.tool_group_save(
        org=catalog, actor=alice, group=group, slug="readers", name="Readers", tools=["chat/*"]
    )
    assert group.tools == ["chat/*"] and group.revision == 2
    services.tool_group_delete(org=catalog, actor=alice, group=group)
    actions = list(
        AuditEvent.objects.filter(organization=catalog, action__startswith="tool_group.")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["tool_group.created", "tool_group.updated", "tool_group.deleted"]


def test_team_subject_reaches_the_agents_of_that_team(catalog, alice):
    team = TeamFactory(organization=catalog, slug="support")
    agent = AgentFactory(organization=catalog, slug="helper", team=team)
    text = "name: support\nsubjects:\n  teams: [support]\nallow:\n  servers: [tickets]\n"
    services.policy_save(org=catalog, actor=alice, text=text)
    compiled = compiled_policy_for(catalog)
    assert compiled.decide(principal_for_agent(agent), "tickets.whoami", {}).allowed
    other = AgentFactory(organization=catalog, slug="other")
    assert not compiled.decide(principal_for_agent(other), "tickets.whoami", {}).allowed


# --------------------------------------------------------------------------- selectors


def test_compiled_policy_is_cached_without_queries_and_recompiled_on_change(
    catalog, triage_bot, alice, django_capture_on_commit_callbacks, django_assert_num_queries
):
    text = "consumer: triage-bot\nallow:\n  tools: [tickets.get_ticket]\n"
    with django_capture_on_commit_callbacks(execute=True):
        services.policy_save(org=catalog, actor=alice, text=text)
    first = compiled_policy_for(catalog)
    principal = principal_for_agent(triage_bot)
    with django_assert_num_queries(0):
        assert compiled_policy_for(catalog) is first
        assert first.decide(principal, "tickets.get_ticket", {}).allowed
    with django_capture_on_commit_callbacks(execute=True):
        services.policy_apply(
            org=catalog, actor=alice, text=text.replace("get_ticket", "list_tickets"), dry_run=False
        )
    second = compiled_policy_for(catalog)
    assert second is not first
    assert not second.decide(principal, "tickets.get_ticket", {}).allowed
    assert second.decide(principal, "tickets.list_tickets", {}).allowed


def test_principal_carries_tags_team_and_the_user_acted_for(org_a, bob):
    team = TeamFactory(organization=org_a, slug="support")
    agent = AgentFactory(
        organization=org_a, slug="helper", team=team, tags=["triage", "eu"], acting_for=bob
    )
    principal = principal_for_agent(agent)
    assert principal.org_id == org_a.pk and principal.agent_slug == "helper"
    assert principal.agent_tags == {"triage", "eu"}
    assert principal.team_slugs == {"support"}
    assert principal.user_email == "bob@acme.test"


def test_quarantined_tool_is_never_allowed(org_a, alice):
    approved_server(org_a, "tickets", quarantined=("delete_ticket",))
    agent = AgentFactory(organization=org_a, slug="bot")
    services.policy_save(
        org=org_a, actor=alice, text="consumer: bot\nallow:\n  servers: [tickets]\n"
    )
    compiled = compiled_policy_for(org_a)
    principal = principal_for_agent(agent)
    assert compiled.decide(principal, "tickets.get_ticket", {}).allowed
    assert not compiled.decide(principal, "tickets.delete_ticket", {}).allowed
    assert "tickets.delete_ticket" not in {t.name for t in compiled.visible_tools(principal)}


def test_enabled_false_in_a_file_disables_and_round_trips(
    catalog, triage_bot, alice, django_capture_on_commit_callbacks
):
    principal = principal_for_agent(triage_bot)
    disabled = SEED.replace(
        "    consumer: triage-bot\n", "    enabled: false\n    consumer: triage-bot\n"
    )
    with django_capture_on_commit_callbacks(execute=True):
        result = services.policy_apply(org=catalog, actor=alice, text=disabled, dry_run=False)
    assert result.applied, result.errors
    assert not Policy.objects.get(name="daily-triage").enabled
    assert not compiled_policy_for(catalog).decide(principal, "tickets.get_ticket", {}).allowed
    exported = services.policy_export(org=catalog)
    assert "    enabled: false\n" in exported
    assert services.policy_apply(org=catalog, actor=alice, text=exported, dry_run=True).diff == []

    # The file is the desired state: without the key the policy is enabled again, and the
    # dry run says so first.
    check = services.policy_apply(org=catalog, actor=alice, text=SEED, dry_run=True)
    assert check.diff == ["~ policy 'daily-triage': disabled -> enabled"]
    with django_capture_on_commit_callbacks(execute=True):
        services.policy_apply(org=catalog, actor=alice, text=SEED, dry_run=False)
    assert Policy.objects.get(name="daily-triage").enabled
    assert compiled_policy_for(catalog).decide(principal, "tickets.get_ticket", {}).allowed


def test_disabling_in_the_ui_shows_in_the_yaml_and_the_export(catalog, triage_bot, alice):
    text = "consumer: triage-bot\nallow:\n  tools: [tickets.get_ticket]\n"
    policy = services.policy_save(org=catalog, actor=alice, text=text)
    policy = services.policy_set_enabled(org=catalog, actor=alice, policy=policy, enabled=False)
    assert policy.spec["enabled"] is False
    assert "enabled: false\n" in policy.source_yaml
    assert "enabled: false\n" in services.policy_export(org=catalog)
    # Saving the editor's text as shown keeps it disabled.
    policy = services.policy_save(org=catalog, actor=alice, policy=policy, text=policy.source_yaml)
    assert not policy.enabled
    # The API's explicit flag wins over the text.
    policy = services.policy_save(
        org=catalog, actor=alice, policy=policy, text=policy.source_yaml, enabled=True
    )
    assert policy.enabled and "enabled" not in policy.spec


def test_validation_as_you_type_sees_a_newly_approved_server(catalog, triage_bot, alice):
    from tenants.services import org_bump_policy_version

    text = "consumer: triage-bot\nallow:\n  tools: [wiki.read_page]\n"
    _spec, errors, _warnings, _diff = services.policy_check(org=catalog, text=text)
    assert len(errors) == 1 and "unknown tool 'wiki.read_page'" in errors[0].message
    # The catalog services bump the policy version with every approval; the editor's cached
    # copy of the catalog is keyed by it.
    approved_server(catalog, "wiki", {"read_page": {"page": {"type": "string"}}})
    org_bump_policy_version(org=catalog)
    _spec, errors, _warnings, _diff = services.policy_check(org=catalog, text=text)
    assert errors == []
