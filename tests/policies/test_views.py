"""Policies pages: read with read_policy, change with edit_policy; the editor validates as you
type (htmx partial); bad input shows located errors and changes nothing."""

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from policies import services
from policies.models import Policy, ToolGroup
from tests.factories import AgentFactory
from tests.policies.factories import approved_server

SEED = """\
toolGroups:
  readers: ["tickets/list_*", "tickets.get_ticket"]
policies:
  - name: triage
    consumer: triage-bot
    allow:
      toolGroups: [readers]
    deny:
      tools: [tickets.delete_ticket]
"""


@pytest.fixture
def catalog(org_a):
    approved_server(org_a, "tickets")
    approved_server(org_a, "chat")
    AgentFactory(organization=org_a, slug="triage-bot", name="Triage bot")
    return org_a


@pytest.fixture
def applied(catalog, alice):
    result = services.policy_apply(org=catalog, actor=alice, text=SEED, dry_run=False)
    assert result.applied, result.errors
    return catalog


def url(name, *args):
    return reverse(f"policies:{name}", args=("acme", *args))


def test_list_shows_policies_and_groups_to_readers(applied, client_as, member_with_role):
    page = client_as(member_with_role("auditor")).get(url("list"))
    assert page.status_code == 200
    body = page.content.decode()
    assert "triage" in body and "readers" in body and "tickets.delete_ticket" in body
    assert "New policy" not in body  # an auditor sees no edit buttons


def test_members_without_read_policy_are_refused(applied, client_as, bob):
    assert client_as(bob).get(url("list")).status_code == 403


def test_sidebar_links_to_policies(applied, client_as, alice):
    body = client_as(alice).get(reverse("tenants:dashboard", args=("acme",))).content.decode()
    assert url("list") in body


def test_editor_validates_as_you_type_with_locations_and_diff(applied, client_as, alice):
    policy = Policy.objects.get(name="triage")
    client = client_as(alice)
    bad = "consumer: triage-bot\nallow:\n  tools: [tickets.nope]\n"
    response = client.post(url("validate", policy.pk), {"text": bad}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200
    assert "allow.tools[0]" in body and "tickets.nope" in body
    assert "<html" not in body  # a partial, not the page
    good = "name: triage\nconsumer: triage-bot\nallow:\n  tools: [tickets.get_ticket]\n"
    body = client.post(url("validate", policy.pk), {"text": good}).content.decode()
    assert "Valid" in body
    assert "policy &#x27;triage&#x27;: allow.tools: &#x27;tickets.get_ticket&#x27;" in body or (
        "allow.tools" in body
    )


def test_save_yaml_from_the_editor(applied, client_as, alice):
    policy = Policy.objects.get(name="triage")
    text = "name: triage\nconsumer: triage-bot\nallow:\n  tools: [tickets.get_ticket]\n"
    response = client_as(alice).post(url("edit", policy.pk), {"mode": "yaml", "text": text})
    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.spec["allow"] == {"tools": ["tickets.get_ticket"]}
    assert policy.revision == 2


def test_bad_yaml_in_the_editor_shows_errors_and_changes_nothing(
    applied, client_as, alice, row_counts
):
    policy = Policy.objects.get(name="triage")
    before = row_counts()
    response = client_as(alice).post(
        url("edit", policy.pk), {"mode": "yaml", "text": "consumer: [unclosed"}
    )
    assert response.status_code == 400
    assert "line 2" in response.content.decode() and "not valid YAML" in response.content.decode()
    assert row_counts() == before


def test_simple_form_keeps_the_advanced_sections(applied, client_as, alice):
    text = (
        "name: poster\nsubjects:\n  agents: [triage-bot]\nallow:\n  tools: [chat.post_message]\n"
        "arguments:\n  chat.post_message:\n    channel: {pinned: triage}\n"
    )
    policy = services.policy_save(org=applied, actor=alice, text=text)
    response = client_as(alice).post(
        url("edit", policy.pk),
        {
            "mode": "form",
            "name": "poster",
            "agents": "triage-bot",
            "allow_tools": "chat.post_message, chat.read_messages",
            "rate_limit_per_minute": "30",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    policy.refresh_from_db()
    assert policy.spec["allow"]["tools"] == ["chat.post_message", "chat.read_messages"]
    assert policy.spec["arguments"]["chat.post_message"]["channel"] == {"pinned": "triage"}
    assert policy.spec["limits"] == {"rateLimitPerMinute": 30}


def test_create_policy_with_the_simple_form(catalog, client_as, alice):
    response = client_as(alice).post(
        url("create"),
        {"mode": "form", "name": "readers", "agents": "*", "allow_servers": "tickets"},
    )
    assert response.status_code == 302
    assert Policy.objects.get(name="readers").spec["subjects"] == {"agents": ["*"]}


def test_auditor_cannot_save_toggle_or_delete(applied, client_as, member_with_role, row_counts):
    client = client_as(member_with_role("auditor"))
    policy = Policy.objects.get(name="triage")
    before = row_counts()
    assert client.post(url("edit", policy.pk), {"mode": "yaml", "text": SEED}).status_code == 403
    assert client.post(url("toggle", policy.pk)).status_code == 403
    assert client.post(url("delete", policy.pk)).status_code == 403
    assert client.post(url("apply"), {"text": SEED, "action": "apply"}).status_code == 403
    assert row_counts() == before


def test_toggle_and_delete(applied, client_as, alice):
    client = client_as(alice)
    policy = Policy.objects.get(name="triage")
    client.post(url("toggle", policy.pk))
    policy.refresh_from_db()
    assert not policy.enabled
    assert client.post(url("delete", policy.pk)).status_code == 302
    assert not Policy.objects.filter(pk=policy.pk).exists()
    assert AuditEvent.objects.filter(action="policy.deleted", target_label="triage").exists()


def test_apply_page_checks_then_applies(catalog, client_as, alice):
    client = client_as(alice)
    check = client.post(url("apply"), {"text": SEED, "action": "check"})
    body = check.content.decode()
    assert check.status_code == 200
    assert "policy &#x27;triage&#x27; added" in body
    assert not Policy.objects.exists()
    assert client.post(url("apply"), {"text": SEED, "action": "apply"}).status_code == 302
    assert Policy.objects.filter(name="triage").exists()


def test_apply_page_shows_errors_with_lines(catalog, client_as, alice, row_counts):
    before = row_counts()
    text = SEED.replace("tickets.delete_ticket", "tickets.delete_everything")
    response = client_as(alice).post(url("apply"), {"text": text, "action": "apply"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "policies[0].deny.tools[0]" in body and "line 9" in body
    assert row_counts() == before


def test_export_downloads_yaml(applied, client_as, member_with_role):
    response = client_as(member_with_role("auditor")).get(url("export") + "?download=1")
    assert response["Content-Type"].startswith("application/yaml")
    assert "attachment" in response["Content-Disposition"]
    assert response.content.decode() == services.policy_export(org=applied)


def test_tool_group_pages(applied, client_as, alice):
    client = client_as(alice)
    response = client.post(
        url("groups"),
        {"slug": "chatters", "name": "Chat", "tools": "chat.read_messages\nchat/list_*"},
    )
    assert response.status_code == 302
    group = ToolGroup.objects.get(slug="chatters")
    assert group.tools == ["chat.read_messages", "chat/list_*"]
    page = client.get(url("group-edit", group.pk))
    assert page.status_code == 200 and "chat/list_*" in page.content.decode()
    in_use = ToolGroup.objects.get(slug="readers")
    response = client.post(url("group-delete", in_use.pk), follow=True)
    assert "used by policy &#x27;triage&#x27;" in response.content.decode()
    assert ToolGroup.objects.filter(pk=in_use.pk).exists()
    assert client.post(url("group-delete", group.pk)).status_code == 302
    assert not ToolGroup.objects.filter(pk=group.pk).exists()


def test_explain_page_answers_in_words(applied, client_as, member_with_role):
    client = client_as(member_with_role("auditor"))
    agent = applied.agents.get(slug="triage-bot")
    response = client.post(
        url("explain"),
        {
            "agent": str(agent.pk),
            "tool": "tickets.delete_ticket",
            "arguments": '{"ticket_id": "T-1"}',
        },
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "Denied: agent &#x27;triage-bot&#x27; may not call tickets.delete_ticket." in body
    response = client.post(
        url("explain"),
        {"agent": str(agent.pk), "tool": "tickets.get_ticket", "arguments": "not json"},
    )
    assert response.status_code == 400 and "Not valid JSON" in response.content.decode()


def test_a_disabled_policy_shows_enabled_false_in_the_editor(applied, client_as, alice):
    client = client_as(alice)
    policy = Policy.objects.get(name="triage")
    client.post(url("toggle", policy.pk))
    body = client.get(url("edit", policy.pk)).content.decode()
    assert "enabled: false" in body
    assert "disabled</span>" in body


def test_editor_shows_the_yaml_lines_saving_would_change(applied, client_as, alice):
    policy = Policy.objects.get(name="triage")
    client = client_as(alice)
    live = client.get(url("edit", policy.pk)).content.decode()
    assert "tools: [&quot;tickets.delete_ticket&quot;]" in live
    edited = (
        "name: triage\nconsumer: triage-bot\nallow:\n  toolGroups: [readers]\n"
        "deny:\n  tools: [tickets.delete_ticket, chat.delete_channel]\n"
    )
    body = client.post(url("validate", policy.pk), {"text": edited}).content.decode()
    assert '<span class="yd-del">-  tools: [&quot;tickets.delete_ticket&quot;]</span>' in body
    assert (
        '<span class="yd-add">+  tools: [&quot;tickets.delete_ticket&quot;, '
        "&quot;chat.delete_channel&quot;]</span>"
    ) in body
    # Only layout changed (the canonical form is the same): no YAML diff.
    same = "{name: triage, consumer: triage-bot, allow: {toolGroups: [readers]},\n"
    same += " deny: {tools: [tickets.delete_ticket]}}\n"
    body = client.post(url("validate", policy.pk), {"text": same}).content.decode()
    assert "Valid" in body and "yaml-diff" not in body
