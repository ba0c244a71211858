"""The demo MCP servers, driven by the official SDK client in both protocol eras."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from demo.servers.common import authorization_fingerprint
from tests.peers.process import listening_addresses
from tests.peers.servers import DemoUpstream, demo_stdio

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

# "legacy" runs the 2025-11-25 initialize handshake; "2026-07-28" is the stateless era.
ERAS = pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
EXPECTED_VERSION = {"legacy": "2025-11-25", "2026-07-28": "2026-07-28"}


def http_client(url: str, mode: str, headers: dict[str, str] | None = None) -> Client:
    http = httpx2.AsyncClient(headers=headers or {}, timeout=10.0)
    return Client(streamable_http_client(url, http_client=http), mode=mode)


@ERAS
async def test_tickets_tools_are_listed_with_titles_and_annotations(
    demo_upstream: DemoUpstream, mode: str
) -> None:
    async with http_client(demo_upstream.tickets_url, mode) as client:
        assert client.protocol_version == EXPECTED_VERSION[mode]
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert set(tools) == {"list_tickets", "get_ticket", "update_ticket", "delete_ticket", "whoami"}
    assert tools["list_tickets"].title == "List tickets"
    assert tools["list_tickets"].annotations.read_only_hint is True
    assert tools["delete_ticket"].annotations.destructive_hint is True
    assert tools["update_ticket"].annotations.read_only_hint is False
    assert tools["update_ticket"].annotations.destructive_hint is False
    status = tools["list_tickets"].input_schema["properties"]["status"]
    assert "in_progress" in str(status), "the status filter should advertise its allowed values"


@ERAS
async def test_list_tickets_filters_by_status_and_update_time(
    demo_upstream: DemoUpstream, mode: str
) -> None:
    since = (datetime.now(UTC) - timedelta(hours=12)).isoformat()
    async with http_client(demo_upstream.tickets_url, mode) as client:
        open_tickets = (
            await client.call_tool("list_tickets", {"status": "open"})
        ).structured_content
        recent = (
            await client.call_tool("list_tickets", {"updated_since": since})
        ).structured_content

    assert open_tickets["count"] == len(open_tickets["tickets"]) >= 2
    assert {t["status"] for t in open_tickets["tickets"]} == {"open"}
    # Seeded 40 min, 2 h, 3 h and 5 h before start; the others a day or more ago.
    assert [t["id"] for t in recent["tickets"]] == ["TCK-101", "TCK-106", "TCK-102", "TCK-103"]


@ERAS
async def test_daily_triage_story_reads_posts_and_updates(
    demo_upstream: DemoUpstream, mode: str
) -> None:
    async with (
        http_client(demo_upstream.tickets_url, mode) as tickets,
        http_client(demo_upstream.chat_url, mode) as chat,
    ):
        urgent = (await tickets.call_tool("list_tickets", {"status": "open"})).structured_content
        summary = "Triage: " + ", ".join(t["id"] for t in urgent["tickets"])
        posted = await chat.call_tool("post_message", {"channel": "#daily-triage", "text": summary})
        messages = await chat.call_tool("read_messages", {"channel": "daily-triage", "limit": 1})
        updated = await tickets.call_tool(
            "update_ticket",
            {"ticket_id": "TCK-101", "status": "in_progress", "comment": "Posted in #daily-triage"},
        )
        fetched = await tickets.call_tool("get_ticket", {"ticket_id": "tck-101"})

    assert not posted.is_error
    assert posted.structured_content["channel"] == "daily-triage"
    assert [m["text"] for m in messages.structured_content["messages"]] == [summary]
    assert updated.structured_content["status"] == "in_progress"
    assert fetched.structured_content["status"] == "in_progress"
    assert fetched.structured_content["comments"][-1]["body"] == "Posted in #daily-triage"


@ERAS
async def test_whoami_reports_a_fingerprint_of_the_credential_not_the_secret(
    demo_upstream: DemoUpstream, mode: str
) -> None:
    secret = "Bearer upstream-token-for-alice"
    async with http_client(demo_upstream.chat_url, mode, {"Authorization": secret}) as client:
        with_token = (await client.call_tool("whoami", {})).content[0].text
    async with http_client(demo_upstream.tickets_url, mode) as client:
        without_token = (await client.call_tool("whoami", {})).content[0].text

    assert with_token == authorization_fingerprint(secret)
    assert with_token.startswith("sha256:") and "upstream-token" not in with_token
    assert with_token != authorization_fingerprint("Bearer upstream-token-for-bob")
    assert without_token == "none"


async def test_mistakes_come_back_as_readable_tool_errors(demo_upstream: DemoUpstream) -> None:
    async with http_client(demo_upstream.tickets_url, "2026-07-28") as tickets:
        missing = await tickets.call_tool("get_ticket", {"ticket_id": "TCK-999"})
        bad_status = await tickets.call_tool("list_tickets", {"status": "done"})
        bad_date = await tickets.call_tool("list_tickets", {"updated_since": "yesterday"})
        empty_update = await tickets.call_tool("update_ticket", {"ticket_id": "TCK-101"})
    async with http_client(demo_upstream.chat_url, "2026-07-28") as chat:
        no_channel = await chat.call_tool("post_message", {"channel": "#nope", "text": "hi"})

    assert missing.is_error and "TCK-999" in missing.content[0].text
    assert bad_status.is_error and "in_progress" in bad_status.content[0].text
    assert bad_date.is_error and "ISO 8601" in bad_date.content[0].text
    assert empty_update.is_error and "Nothing to update" in empty_update.content[0].text
    assert no_channel.is_error and "#daily-triage" in no_channel.content[0].text


async def test_deletions_last_until_restart_then_seed_data_returns(
    demo_upstream: DemoUpstream,
) -> None:
    async with http_client(demo_upstream.chat_url, "legacy") as chat:
        deleted = await chat.call_tool("delete_channel", {"channel": "random"})
        channels = (await chat.call_tool("list_channels", {})).structured_content
    assert deleted.structured_content == {"name": "random", "deleted": True, "messages_deleted": 1}
    assert "random" not in {c["name"] for c in channels["channels"]}
    assert demo_upstream.changes() == 1

    demo_upstream.restart()

    async with http_client(demo_upstream.chat_url, "legacy") as chat:
        channels = (await chat.call_tool("list_channels", {})).structured_content
    assert "random" in {c["name"] for c in channels["channels"]}
    assert demo_upstream.changes() == 0


async def test_http_server_binds_loopback_only_and_refuses_foreign_host_headers(
    demo_upstream: DemoUpstream,
) -> None:
    assert listening_addresses(demo_upstream.port) == {"127.0.0.1"}
    async with httpx2.AsyncClient(timeout=5.0) as http:
        health = await http.get(f"{demo_upstream}/healthz")
        rebound = await http.post(
            demo_upstream.tickets_url,
            headers={"Host": "attacker.example", "Accept": "application/json, text/event-stream"},
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        )
    assert health.json()["servers"] == ["chat", "tickets"]
    assert rebound.status_code == 421


@pytest.mark.parametrize(
    ("name", "tool", "arguments", "expected_key"),
    [
        ("tickets", "list_tickets", {"status": "urgent"}, None),
        ("tickets", "list_tickets", {}, "tickets"),
        ("chat", "post_message", {"channel": "general", "text": "hello over stdio"}, "id"),
    ],
    ids=["tickets-bad-arg", "tickets", "chat"],
)
async def test_stdio_servers_answer_the_sdk_client(
    name: str, tool: str, arguments: dict[str, str], expected_key: str | None
) -> None:
    async with Client(demo_stdio(name).params()) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        result = await client.call_tool(tool, arguments)
        whoami = (await client.call_tool("whoami", {})).content[0].text

    assert tool in names and "whoami" in names
    assert whoami == "none", "stdio carries no Authorization header"
    if expected_key is None:
        assert result.is_error
    else:
        assert not result.is_error and expected_key in result.structured_content
