"""The policies "done when", in real Chromium against the live server: an admin opens the
demo's daily-triage policy in the YAML editor, makes a typo and sees it located while typing,
fixes it, sees which YAML lines saving would change, saves, then asks Explain about an allowed
and a denied call and reads the reasons."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from demo.seed.policies import DEMO_POLICY_YAML
from policies import services as policy_services
from policies.models import Policy
from tenants import services
from tenants.models import Membership
from tenants.permissions import Role
from tests.factories import AgentFactory, UserFactory
from tests.policies.factories import approved_server

ADMIN = ("ada@demo-corp.test", "lantern-cobalt-71-meadow")


def test_admin_edits_the_triage_policy_and_explains_calls(
    page: Page,
    live_server: object,
    sign_in: Callable[[Page, str, str], None],
    screenshot: Callable[[Page, str], Path],
) -> None:
    owner = UserFactory(email="owner@demo-corp.test")
    org = services.org_create(name="Demo Corp", slug="demo-corp", owner=owner)
    admin = UserFactory(email=ADMIN[0], password=ADMIN[1], name="Ada Admin")
    Membership.objects.create(organization=org, user=admin, role=Role.ADMIN)
    approved_server(org, "tickets")
    approved_server(org, "chat")
    AgentFactory(organization=org, slug="daily-triage-agent", name="Daily triage")
    applied = policy_services.policy_apply(
        org=org, actor=None, text=DEMO_POLICY_YAML, dry_run=False
    )
    assert applied.applied, applied.errors

    sign_in(page, *ADMIN)
    page.locator(".sidebar").get_by_role("link", name="Policies").click()
    expect(page.get_by_role("heading", name="Policies", exact=True)).to_be_visible()
    screenshot(page, "policies-list")
    page.get_by_role("link", name="daily-triage", exact=True).first.click()  # then the group
    editor = page.get_by_label("Policy YAML")
    expect(editor).to_have_value(re.compile(r"consumer: daily-triage-agent"))
    validation = page.locator("#validation")
    expect(validation).to_contain_text("Valid")  # checked once on load

    # A typo in a deny rule: located (path and line) and a suggestion, while typing.
    live_text = editor.input_value()
    deny = '  tools: ["tickets.delete_ticket", "chat.delete_channel"]'
    deny_line = live_text.splitlines().index(deny) + 1
    caret = live_text.index(deny) + len('  tools: ["tickets.delete_tic')
    editor.click()
    editor.evaluate("(el, at) => el.setSelectionRange(at, at)", caret)
    editor.press_sequentially("z")  # tickets.delete_ticzket
    expect(validation).to_contain_text("1 problem: nothing was saved")
    expect(validation).to_contain_text("deny.tools[0]")
    expect(validation).to_contain_text(f"line {deny_line}")
    expect(validation).to_contain_text("did you mean 'tickets.delete_ticket'?")
    screenshot(page, "policies-editor-error")

    # Fixed, and two real changes: a lower rate limit and a shorter comment.
    editor.press("Backspace")
    expect(validation).to_contain_text("No change against what is live")
    fixed = live_text.replace("rateLimitPerMinute: 120", "rateLimitPerMinute: 60").replace(
        "maxLength: 2000", "maxLength: 500"
    )
    editor.fill(fixed)
    expect(validation).to_contain_text("Valid")
    diff = page.get_by_label("YAML diff")
    expect(diff.locator(".yd-del")).to_have_text(
        ["-          maxLength: 2000", "-  rateLimitPerMinute: 120"]
    )
    expect(diff.locator(".yd-add")).to_have_text(
        ["+          maxLength: 500", "+  rateLimitPerMinute: 60"]
    )
    expect(validation).to_contain_text("limits.rateLimitPerMinute: 120 -> 60")
    screenshot(page, "policies-editor-diff")

    page.get_by_role("button", name="Save").first.click()
    expect(page.get_by_text("Policy 'daily-triage' saved (revision 2).")).to_be_visible()
    policy = Policy.objects.get(organization=org, name="daily-triage")
    assert policy.revision == 2 and policy.spec["limits"]["rateLimitPerMinute"] == 60

    # Explain: an allowed call through the safe variant, then a denied delete.
    page.get_by_role("link", name="Policies").first.click()
    page.get_by_role("link", name="Explain a call").click()
    page.get_by_label("Agent").select_option(label="Daily triage (daily-triage-agent)")
    page.get_by_label("Tool").fill("chat.post_to_triage")
    page.get_by_label("Arguments").fill(json.dumps({"text": "Morning summary: 3 new tickets"}))
    page.get_by_role("button", name="Explain").click()
    result = page.locator("#explanation")
    expect(result.locator(".pill")).to_have_text("allowed")
    expect(result).to_contain_text("may call chat.post_to_triage")
    expect(result).to_contain_text("is allowed by policy 'daily-triage' (allow.toolGroups[0]")
    expect(result).to_contain_text("'channel' is set to 'daily-triage' by policy 'daily-triage'")
    expect(result).to_contain_text("at most 5 calls per minute")
    expect(result.locator("pre")).to_have_text(
        '{\n  "text": "Morning summary: 3 new tickets",\n  "channel": "daily-triage"\n}'
    )
    screenshot(page, "policies-explain-allowed")

    page.get_by_label("Tool").fill("tickets.delete_ticket")
    page.get_by_label("Arguments").fill(json.dumps({"ticket_id": "T-1"}))
    page.get_by_role("button", name="Explain").click()
    expect(result.locator(".pill")).to_have_text("denied")
    expect(result).to_contain_text("denied")
    expect(result).to_contain_text("policy 'daily-triage' (deny.tools[0]")
    screenshot(page, "policies-explain-denied")
