"""The catalog REST API, driven with real personal access tokens against the real fault server."""

import pytest

from catalog.models import Server, ServerVersion
from tests.peers.fault_server import DEFAULT_TOOLS

pytestmark = pytest.mark.django_db
BASE = "/api/v1/orgs/acme"


def test_register_fetch_submit_approve_search(api_as, bob, approver, fault_server) -> None:
    owner_api, approver_api = api_as(bob), api_as(approver)
    created = owner_api.post(
        f"{BASE}/servers/",
        {
            "name": "Faulty",
            "slug": "faulty",
            "url": fault_server.url,
            "auth_mode": "static",
            "static_headers": {"Authorization": "Bearer upstream-secret-123"},
            "tags": ["Test"],
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["status"] == "draft"
    assert body["static_header_names"] == ["Authorization"]
    assert "upstream-secret-123" not in created.content.decode()
    assert "upstream-secret-123" not in Server.objects.get().static_headers_blob
    server_id = body["id"]

    fetched = owner_api.post(f"{BASE}/servers/{server_id}/fetch-tools/", format="json")
    assert fetched.status_code == 201, fetched.json()
    version_id = fetched.json()["id"]
    assert fetched.json()["tool_count"] == len(DEFAULT_TOOLS)

    detail = approver_api.get(f"{BASE}/servers/{server_id}/versions/{version_id}/").json()
    assert {t["name"] for t in detail["tools"]} == {t["name"] for t in DEFAULT_TOOLS}
    assert detail["diff"] is None

    assert (
        owner_api.post(
            f"{BASE}/servers/{server_id}/versions/{version_id}/submit/", {}, format="json"
        ).status_code
        == 200
    )
    queue = approver_api.get(f"{BASE}/review-queue/").json()
    assert [v["id"] for v in queue["results"]] == [version_id]

    # bob is a member: he may submit but not approve.
    denied = owner_api.post(
        f"{BASE}/servers/{server_id}/versions/{version_id}/approve/", {}, format="json"
    )
    assert denied.status_code == 403

    approved = approver_api.post(
        f"{BASE}/servers/{server_id}/versions/{version_id}/approve/", {"note": "ok"}, format="json"
    )
    assert approved.status_code == 200, approved.json()
    assert approved.json()["status"] == "approved"
    tools = approver_api.get(f"{BASE}/servers/{server_id}/tools/").json()
    assert len(tools) == len(DEFAULT_TOOLS) and not any(t["quarantined"] for t in tools)

    found = owner_api.get(f"{BASE}/tools/search/", {"q": "sleep seconds"}).json()
    assert [t["qualified_name"] for t in found][:1] == ["faulty.slow"]


def test_bad_input_is_a_400_with_field_errors_and_changes_nothing(api_as, bob, row_counts) -> None:
    api = api_as(bob)
    before = row_counts()  # after the token: it is the only row the test itself writes
    cases = [
        ({"name": "X", "slug": "has.dot", "url": "https://a.example.com/mcp"}, "slug"),
        ({"name": "X", "slug": "x", "url": "ftp://a.example.com/mcp"}, "url"),
        (
            {
                "name": "X",
                "slug": "x",
                "url": "https://a.example.com/mcp",
                "egress_hosts": ["b.example.com"],
            },
            "url",
        ),
        ({"name": "X", "slug": "x", "transport": "stdio"}, "command"),
        (
            {"name": "X", "slug": "x", "url": "https://a.example.com/mcp", "auth_mode": "static"},
            "static_headers",
        ),
        ({"name": "X", "slug": "x", "url": "https://a.example.com/mcp", "surprise": 1}, "surprise"),
        (
            {
                "name": "X",
                "slug": "x",
                "url": "https://a.example.com/mcp",
                "static_headers": {"Bad Header": "v"},
            },
            "static_headers",
        ),
    ]
    for payload, field in cases:
        response = api.post(f"{BASE}/servers/", payload, format="json")
        assert response.status_code == 400, (payload, response.content)
        assert field in response.json().get("errors", {}), (payload, response.json())
    assert row_counts() == before


def test_fetch_from_an_unreachable_url_is_a_clear_400(api_as, bob, http_server, row_counts) -> None:
    server = http_server("http://127.0.0.1:9/mcp")
    api = api_as(bob)
    before = row_counts()
    response = api.post(f"{BASE}/servers/{server.pk}/fetch-tools/", format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "unreachable"
    assert "unreachable" in response.json()["detail"]
    assert row_counts() == before
    assert not ServerVersion.objects.exists()


def test_reject_without_note_is_400(api_as, bob, approver, http_server, fault_server) -> None:
    from catalog import services

    server = http_server(fault_server.url)
    version = services.server_fetch_tools(org=server.organization, actor=bob, server=server)
    services.version_submit(org=server.organization, actor=bob, version=version)
    url = f"{BASE}/servers/{server.pk}/versions/{version.pk}/reject/"
    response = api_as(approver).post(url, {"note": ""}, format="json")
    assert response.status_code == 400
    assert "note" in response.json()["errors"]
    assert api_as(approver).post(url, {"note": "no thanks"}, format="json").status_code == 200


def test_another_orgs_server_is_404(api_as, charlie, bob, http_server) -> None:
    server = http_server("https://a.example.com/mcp")
    response = api_as(charlie).get(f"/api/v1/orgs/globex/servers/{server.pk}/")
    assert response.status_code == 404
