"""The policies REST API: CRUD, apply with dry run, export, explain, replay; permissions;
bad input answers 400 with located errors and changes nothing."""

import pytest

from policies.models import Policy, ToolGroup
from tests.factories import AgentFactory
from tests.policies.factories import approved_server

BASE = "/api/v1/orgs/acme/"
SEED = """\
toolGroups:
  readers: ["tickets/list_*", "tickets.get_ticket"]
policies:
  - name: triage
    consumer: triage-bot
    allow:
      toolGroups: ["readers"]
    deny:
      tools: ["tickets.delete_ticket"]
"""


@pytest.fixture
def catalog(org_a):
    approved_server(org_a, "tickets")
    AgentFactory(organization=org_a, slug="triage-bot")
    return org_a


@pytest.fixture
def api(catalog, alice, api_as):
    return api_as(alice)


def test_apply_dry_run_by_default_then_apply(api):
    response = api.post(BASE + "policies/apply", {"yaml": SEED}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["dry_run"] is True and body["applied"] is False
    assert "+ policy 'triage' added" in body["diff"]
    assert not Policy.objects.exists()
    response = api.post(BASE + "policies/apply", {"yaml": SEED, "dry_run": False}, format="json")
    assert response.json()["applied"] is True
    assert response.json()["changes"] == ["tool group 'readers' created", "policy 'triage' created"]
    exported = api.get(BASE + "policies/export").json()
    assert exported["yaml"] == SEED
    assert exported["policy_version"] >= 1


def test_apply_errors_are_located(api, row_counts):
    before = row_counts()
    bad = SEED.replace("tickets.delete_ticket", "globex.delete_everything")
    response = api.post(BASE + "policies/apply", {"yaml": bad, "dry_run": False}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_policy"
    assert "policies[0].deny.tools[0]" in body["errors"]
    assert body["problems"][0]["line"] == 9
    assert row_counts() == before


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"yaml": ""},
        {"yaml": 42},
        {"yaml": SEED, "dry_run": "maybe"},
        {"yaml": SEED, "surprise": True},
        {"yaml": "x" * 300_000},
    ],
)
def test_apply_rejects_malformed_requests(api, row_counts, payload):
    before = row_counts()
    response = api.post(BASE + "policies/apply", payload, format="json")
    assert response.status_code == 400
    assert response.json()["detail"]
    assert row_counts() == before


def test_auditor_may_dry_run_but_not_apply(catalog, api_as, member_with_role, row_counts):
    client = api_as(member_with_role("auditor"))
    assert client.post(BASE + "policies/apply", {"yaml": SEED}, format="json").status_code == 200
    before = row_counts()
    response = client.post(BASE + "policies/apply", {"yaml": SEED, "dry_run": False}, format="json")
    assert response.status_code == 403
    assert (
        client.post(
            BASE + "policies/",
            {"yaml": "consumer: triage-bot\nallow:\n  servers: [tickets]\n"},
            format="json",
        ).status_code
        == 403
    )
    assert row_counts() == before


def test_member_cannot_read_policies(catalog, api_as, bob):
    assert api_as(bob).get(BASE + "policies/").status_code == 403


def test_policy_crud(api):
    text = 'consumer: triage-bot\nallow:\n  servers: ["tickets"]\n'
    created = api.post(BASE + "policies/", {"yaml": text}, format="json")
    assert created.status_code == 201, created.json()
    policy_id = created.json()["id"]
    assert created.json()["yaml"] == text
    listing = api.get(BASE + "policies/").json()
    assert [p["name"] for p in listing["results"]] == ["triage-bot"]
    patched = api.patch(BASE + f"policies/{policy_id}/", {"enabled": False}, format="json")
    assert patched.json()["enabled"] is False
    replaced = api.put(
        BASE + f"policies/{policy_id}/",
        {"yaml": text.replace('servers: ["tickets"]', "tools: [tickets.get_ticket]")},
        format="json",
    )
    assert replaced.json()["spec"]["allow"] == {"tools": ["tickets.get_ticket"]}
    assert replaced.json()["revision"] == 3
    assert api.delete(BASE + f"policies/{policy_id}/").status_code == 204
    assert not Policy.objects.exists()


def test_policy_create_with_errors_is_400(api, row_counts):
    before = row_counts()
    text = "consumer: triage-bot\nallow:\n  tools: [tickets.get_ticket]\narguments:\n  tickets.get_ticket:\n    colour: {enum: [red]}\n"
    response = api.post(BASE + "policies/", {"yaml": text}, format="json")
    assert response.status_code == 400
    assert 'arguments["tickets.get_ticket"].colour' in response.json()["errors"]
    assert row_counts() == before


def test_tool_group_crud_and_in_use_refusal(api):
    created = api.post(
        BASE + "tool-groups/", {"slug": "readers", "tools": ["tickets.get_ticket"]}, format="json"
    )
    assert created.status_code == 201, created.json()
    group_id = created.json()["id"]
    api.post(
        BASE + "policies/",
        {"yaml": "consumer: triage-bot\nallow:\n  toolGroups: [readers]\n"},
        format="json",
    )
    refused = api.delete(BASE + f"tool-groups/{group_id}/")
    assert refused.status_code == 400
    assert "used by policy 'triage-bot'" in str(refused.json()["errors"])
    updated = api.put(
        BASE + f"tool-groups/{group_id}/",
        {"slug": "readers", "name": "Readers", "tools": ["tickets/list_*"]},
        format="json",
    )
    assert updated.json()["tools"] == ["tickets/list_*"]
    bad = api.post(BASE + "tool-groups/", {"slug": "x", "tools": ["no dot"]}, format="json")
    assert bad.status_code == 400
    assert ToolGroup.objects.count() == 1


def test_explain(api):
    api.post(BASE + "policies/apply", {"yaml": SEED, "dry_run": False}, format="json")
    response = api.post(
        BASE + "policies/explain",
        {"agent": "triage-bot", "tool": "tickets.get_ticket", "arguments": {"ticket_id": "T-1"}},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["allowed"] is True
    assert "group 'readers'" in " ".join(response.json()["reasons"])
    missing = api.post(BASE + "policies/explain", {"agent": "ghost", "tool": "a.b"}, format="json")
    assert missing.status_code == 400 and "ghost" in missing.json()["detail"]


def test_replay(api):
    api.post(BASE + "policies/apply", {"yaml": SEED, "dry_run": False}, format="json")
    response = api.post(
        BASE + "policies/replay",
        {
            "yaml": SEED.replace('deny:\n      tools: ["tickets.delete_ticket"]\n', ""),
            "max_rows": 100,
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["scanned"] == 0 and response.json()["truncated"] is False
    bad = api.post(BASE + "policies/replay", {"yaml": SEED, "max_rows": 0}, format="json")
    assert bad.status_code == 400


def test_openapi_schema_lists_the_policy_routes(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").content.decode()
    assert "/api/v1/orgs/{org_slug}/policies/apply" in schema
    assert "/api/v1/orgs/{org_slug}/tool-groups/{toolgroup_id}/" in schema
