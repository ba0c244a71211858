"""REST API: read-only, keyset cursor, same filters and errors as the page."""

import pytest

from tests.audit.factories import AuditEventFactory, ToolCallEventFactory

pytestmark = pytest.mark.django_db


def _url(org, suffix=""):
    return f"/api/v1/orgs/{org.slug}/audit-events/{suffix}"


def test_list_pages_with_a_cursor(org_a, member_with_role, api_as) -> None:
    events = [AuditEventFactory(organization=org_a) for _ in range(5)]
    api = api_as(member_with_role("auditor"))
    first = api.get(_url(org_a), {"limit": 2}).json()
    assert [e["id"] for e in first["results"]] == [events[4].id, events[3].id]
    assert first["next_before"] == events[3].id and "before=" in first["next"]
    second = api.get(first["next"]).json()
    assert [e["id"] for e in second["results"]] == [events[2].id, events[1].id]


def test_filters_and_detail(org_a, alice, api_as) -> None:
    call = ToolCallEventFactory(organization=org_a, decision="deny", outcome="denied")
    AuditEventFactory(organization=org_a)
    api = api_as(alice)
    body = api.get(_url(org_a), {"decision": "deny"}).json()
    assert [e["id"] for e in body["results"]] == [call.id]
    detail = api.get(_url(org_a, f"{call.id}/")).json()
    assert detail["tool"] == "list_tickets" and detail["details"]["matched_rules"] == ["allow-read"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "not-a-date"}, "since"),
        ({"actr": "alice"}, "actr"),
        ({"before": "-5"}, "before"),
        ({"limit": "100000"}, "limit"),
        ({"q": "a\x00b"}, "q"),
    ],
)
def test_bad_filters_are_400_with_field_errors(org_a, alice, api_as, params, field) -> None:
    response = api_as(alice).get(_url(org_a), params)
    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_members_and_outsiders_are_refused(org_a, bob, charlie, api_as) -> None:
    event = AuditEventFactory(organization=org_a)
    assert api_as(bob).get(_url(org_a)).status_code == 403
    assert api_as(charlie).get(_url(org_a)).status_code == 404
    assert api_as(charlie).get(_url(org_a, f"{event.id}/")).status_code == 404


def test_api_is_read_only(org_a, alice, api_as) -> None:
    event = AuditEventFactory(organization=org_a)
    api = api_as(alice)
    assert api.post(_url(org_a), {}, format="json").status_code == 405
    assert api.delete(_url(org_a, f"{event.id}/")).status_code == 405


def test_schema_documents_the_audit_endpoints(alice, client_as) -> None:
    body = client_as(alice).get("/api/schema/").content.decode()
    assert "/api/v1/orgs/{org_slug}/audit-events/" in body and "next_before" in body
