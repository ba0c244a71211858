"""The foundation's "done when", in real Chromium against the live server.

An owner signs in through the login page, invites a colleague (who joins through the single-use
link in a browser of their own), gives an agent a key, revokes it, and reads all of it back in
the audit trail.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tenants import services
from tests.factories import UserFactory

OWNER_EMAIL = "olivia@northwind.test"
OWNER_PASSWORD = "lantern-quarry-41-orbit"
COLLEAGUE_EMAIL = "sam@northwind.test"
COLLEAGUE_PASSWORD = "copper-meadow-77-vault"


def test_owner_invites_colleague_issues_and_revokes_a_key_and_audits_it(
    page: Page,
    new_page: Callable[[], Page],
    console_errors: list[str],
    live_server: object,
    settings: object,
    sign_in: Callable[[Page, str, str], None],
    screenshot: Callable[[Page, str], Path],
) -> None:
    # Links in invitations and the MCP URL are built from SITE_URL: point it at this server.
    settings.SITE_URL = str(live_server.url)
    owner = UserFactory(email=OWNER_EMAIL, name="Olivia Owner", password=OWNER_PASSWORD)
    services.org_create(name="Northwind", slug="northwind", owner=owner)

    # Sign in: the only organization's dashboard opens.
    page.goto("/accounts/login/")
    expect(page.get_by_role("heading", name="Sign In")).to_be_visible()
    screenshot(page, "foundation-login")
    sign_in(page, OWNER_EMAIL, OWNER_PASSWORD)
    expect(page).to_have_url(re.compile(r"/o/northwind/$"))
    expect(page.get_by_role("heading", name="Northwind", level=1)).to_be_visible()
    expect(page.locator(".sidebar")).to_contain_text("Owner")
    expect(page.locator(".topbar")).to_contain_text(OWNER_EMAIL)
    screenshot(page, "foundation-dashboard")

    # Members: invite a colleague; the link is shown once.
    page.locator(".sidebar").get_by_role("link", name="Members").click()
    expect(page.get_by_role("heading", name="Members", level=1)).to_be_visible()
    page.get_by_label("Email").fill(COLLEAGUE_EMAIL)
    page.get_by_role("button", name="Invite").click()
    accept_link = page.locator("#accept-url")
    expect(accept_link).to_have_text(re.compile(r"/invite/\S+/$"))
    expect(page.locator(".secret-once")).to_contain_text("shown only this once")
    invite_url = accept_link.inner_text().strip()
    assert invite_url.startswith(f"{live_server.url}/invite/")
    screenshot(page, "foundation-members-invite")

    page.reload()
    expect(page.locator("#invitations")).to_contain_text(COLLEAGUE_EMAIL)  # pending
    expect(page.locator("#accept-url")).to_have_count(0)
    assert invite_url.rsplit("/", 2)[-2] not in page.content()

    # The colleague opens the link in a browser of their own and creates an account.
    guest = new_page()
    guest.goto(invite_url)
    expect(guest.get_by_role("heading", name="Join Northwind")).to_be_visible()
    expect(guest.locator("main")).to_contain_text(COLLEAGUE_EMAIL)
    guest.get_by_label("Name").fill("Sam Colleague")
    guest.get_by_label(re.compile(r"^Password:?$")).fill(COLLEAGUE_PASSWORD)
    guest.get_by_label("Password again").fill(COLLEAGUE_PASSWORD)
    guest.get_by_role("button", name="Create my account and join").click()
    expect(guest).to_have_url(re.compile(r"/o/northwind/$"))
    expect(guest.locator(".flash")).to_contain_text("Welcome to Northwind")
    expect(guest.locator(".topbar")).to_contain_text(COLLEAGUE_EMAIL)
    expect(guest.locator(".sidebar")).to_contain_text("Member")
    # Single use: the same link no longer works.
    guest.goto(invite_url)
    expect(guest.get_by_role("heading", name="This invitation cannot be used")).to_be_visible()
    # Chromium logs the page's 410 status as a console error: that one is expected.
    console_errors[:] = [e for e in console_errors if invite_url not in e]

    # The owner now sees the colleague among the members.
    page.reload()
    expect(page.locator("table").first).to_contain_text(COLLEAGUE_EMAIL)

    # Agents & keys: create an agent, then a key that is shown once.
    page.locator(".sidebar").get_by_role("link", name="Agents & keys").click()
    page.get_by_role("link", name="New agent").click()
    page.get_by_label("Name").fill("Release notes bot")
    page.get_by_label("Slug").fill("release-notes-bot")
    page.get_by_role("button", name="Create agent").click()
    expect(page.get_by_role("heading", name="Release notes bot")).to_be_visible()
    expect(page.locator(".flash")).to_contain_text("Agent Release notes bot created")
    agent_url = page.url

    page.get_by_label("Name").first.fill("laptop")
    page.get_by_role("button", name="Create key").click()
    new_key = page.locator("#new-key")
    expect(new_key).to_have_text(re.compile(r"^mgw_\S{20,}$"))
    plaintext_key = new_key.inner_text().strip()
    expect(page.locator(".secret-once")).to_contain_text("shown only this once")
    expect(page.locator(".secret-once pre")).to_contain_text(f"{live_server.url}/mcp/northwind/")
    screenshot(page, "foundation-agent-key")

    # Opening the agent again shows the key's prefix, never the key.
    page.goto(agent_url)
    expect(page.locator("#new-key")).to_have_count(0)
    assert plaintext_key not in page.content()
    key_row = page.locator("tr", has_text="laptop")
    expect(key_row).to_have_count(1)
    expect(key_row).to_contain_text("active")
    shown_prefix = key_row.locator("td").first.inner_text().rstrip("…")
    assert plaintext_key.startswith(f"mgw_{shown_prefix}_")

    # Revoke it (with a confirmation step).
    key_row.get_by_role("link", name="Revoke…").click()
    expect(page.get_by_role("heading", name=re.compile(r"^Revoke key"))).to_be_visible()
    page.get_by_role("button", name="Revoke key").click()
    expect(page.locator(".flash")).to_contain_text("revoked")
    expect(page.locator("tr", has_text="laptop")).to_contain_text("revoked")
    expect(page.locator("tr", has_text="laptop").get_by_role("link", name="Revoke…")).to_have_count(
        0
    )

    # The audit trail shows each of those actions, newest first, with who did it.
    page.locator(".sidebar").get_by_role("link", name="Audit trail").click()
    expect(page.get_by_role("heading", name="Audit trail", level=1)).to_be_visible()
    rows = page.locator("#audit-rows tr")
    actions = [
        "agent_key.revoked",
        "agent_key.created",
        "agent.created",
        "invitation.accepted",
        "invitation.created",
        "org.created",
    ]
    expect(rows.locator("td:nth-child(2)")).to_have_text(actions)
    expect(rows.filter(has_text="invitation.created")).to_contain_text(OWNER_EMAIL)
    expect(rows.filter(has_text="invitation.accepted")).to_contain_text(COLLEAGUE_EMAIL)
    expect(rows.filter(has_text="agent_key.revoked")).to_contain_text(OWNER_EMAIL)
    assert plaintext_key not in page.content()
    screenshot(page, "foundation-audit")
