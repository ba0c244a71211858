"""Demo team chat MCP server (a Slack stand-in for the daily-triage story).

State lives in memory and is re-seeded on every start. Run alone over stdio with
`python -m demo.servers.chat --stdio`; `python -m demo.servers` serves it over HTTP.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from demo.servers.common import (
    ADDITIVE,
    DESTRUCTIVE,
    NO_CREDENTIAL,
    READ_ONLY,
    add_whoami_tool,
    authorization_fingerprint,
    isoformat,
    utc_now,
)


class Message(BaseModel):
    id: str
    channel: str
    author: str
    text: str
    posted_at: str


class ChannelInfo(BaseModel):
    name: str
    topic: str
    message_count: int


class ChannelList(BaseModel):
    channels: list[ChannelInfo]


class MessageList(BaseModel):
    channel: str
    messages: list[Message]


class DeletedChannel(BaseModel):
    name: str
    deleted: bool
    messages_deleted: int


# channel -> (topic, [(author, text, age)])
_SEED: dict[str, tuple[str, list[tuple[str, str, timedelta]]]] = {
    "general": (
        "Company-wide announcements",
        [
            ("hr-bot", "Reminder: the office is closed on Friday.", timedelta(days=1)),
            ("priya.shah", "Month-end close starts Monday: file expenses.", timedelta(hours=20)),
        ],
    ),
    "daily-triage": (
        "One summary per day of what needs attention (posted by the triage agent)",
        [
            (
                "triage-agent",
                "Yesterday: 2 urgent tickets open (TCK-098, TCK-099), both assigned.",
                timedelta(hours=24),
            ),
        ],
    ),
    "support": (
        "Customer support escalations",
        [
            ("maria.lopez", "EU checkout failures, opened TCK-101.", timedelta(minutes=45)),
            ("devon.park", "Looking at the Okta SSO loop (TCK-106).", timedelta(hours=2)),
        ],
    ),
    "incidents": (
        "Production incidents: open a thread per incident",
        [
            ("pagerbot", "Resolved: API latency in us-east (INC-2231).", timedelta(days=2)),
        ],
    ),
    "random": (
        "Non-work banter",
        [("sam.okoro", "Who left the sourdough starter in the fridge?", timedelta(hours=6))],
    ),
}


class ChatStore:
    """In-memory channels and messages, re-seeded relative to `now`."""

    def __init__(self, now: datetime | None = None) -> None:
        now = now or utc_now()
        self._topics: dict[str, str] = {}
        self._messages: dict[str, list[Message]] = {}
        self._next_id = 1
        # How many writes happened since seeding: lets test fixtures restart only a dirty server.
        self.changes = 0
        # Fingerprint of the credential the last post came with (shown by /healthz).
        self.last_post_credential = NO_CREDENTIAL
        for name, (topic, seed_messages) in _SEED.items():
            self._topics[name] = topic
            self._messages[name] = []
            for author, text, age in sorted(seed_messages, key=lambda m: m[2], reverse=True):
                self._append(name, author, text, now - age)

    def _append(self, channel: str, author: str, text: str, when: datetime) -> Message:
        message = Message(
            id=f"msg-{self._next_id:04d}",
            channel=channel,
            author=author,
            text=text,
            posted_at=isoformat(when),
        )
        self._next_id += 1
        self._messages[channel].append(message)
        return message

    def channel_name(self, channel: str) -> str:
        name = channel.strip().removeprefix("#").lower()
        if name not in self._topics:
            known = ", ".join(f"#{n}" for n in sorted(self._topics))
            raise ToolError(f"Channel {channel!r} not found. Known channels: {known}.")
        return name

    def channels(self) -> list[ChannelInfo]:
        return [
            ChannelInfo(name=name, topic=topic, message_count=len(self._messages[name]))
            for name, topic in sorted(self._topics.items())
        ]

    def read(self, channel: str, limit: int) -> MessageList:
        name = self.channel_name(channel)
        return MessageList(channel=name, messages=self._messages[name][-limit:])

    def post(self, channel: str, text: str, author: str) -> Message:
        message = self._append(self.channel_name(channel), author, text, utc_now())
        self.changes += 1
        return message

    def delete(self, channel: str) -> DeletedChannel:
        name = self.channel_name(channel)
        del self._topics[name]
        removed = self._messages.pop(name)
        self.changes += 1
        return DeletedChannel(name=name, deleted=True, messages_deleted=len(removed))


ChannelName = Annotated[
    str, Field(description="Channel name, with or without '#', e.g. 'daily-triage'.", min_length=1)
]


def build_server(
    store: ChatStore | None = None, identify: Callable[[str | None], str | None] | None = None
) -> MCPServer:
    """A chat server over `store` (default: a freshly seeded one of its own). `identify` maps
    the request's Authorization header to the account it belongs to (the demo OAuth server's
    grant): posts are then written as that person, as a real chat would show them."""
    store = store if store is not None else ChatStore()
    server = MCPServer(
        name="demo-chat",
        title="Demo team chat",
        version="1.0.0",
        instructions=(
            "A small team chat. Use list_channels to see channels, read_messages to read "
            "recent messages, post_message to post."
        ),
    )

    @server.tool(title="List channels", annotations=READ_ONLY)
    async def list_channels() -> ChannelList:
        """List the chat channels with their topic and message count."""
        return ChannelList(channels=store.channels())

    @server.tool(title="Read messages", annotations=READ_ONLY)
    async def read_messages(
        channel: ChannelName,
        limit: Annotated[
            int, Field(description="How many of the most recent messages to return.", ge=1, le=100)
        ] = 20,
    ) -> MessageList:
        """Read the most recent messages of a channel, oldest first."""
        return store.read(channel, limit)

    @server.tool(title="Post message", annotations=ADDITIVE)
    async def post_message(
        channel: ChannelName,
        text: Annotated[str, Field(description="Message text.", min_length=1, max_length=4000)],
        ctx: Context,
    ) -> Message:
        """Post a message to a channel. Returns the posted message."""
        headers = ctx.headers
        authorization = headers.get("authorization") if headers else None
        author = identify(authorization) if identify is not None else None
        message = store.post(channel, text, author=author or "agent")
        store.last_post_credential = authorization_fingerprint(authorization)
        return message

    @server.tool(title="Delete channel", annotations=DESTRUCTIVE)
    async def delete_channel(channel: ChannelName) -> DeletedChannel:
        """Permanently delete a channel and all of its messages. This cannot be undone."""
        return store.delete(channel)

    add_whoami_tool(server)

    return server


if __name__ == "__main__":
    from demo.servers.cli import run_single

    sys.exit(run_single(build_server, prog="python -m demo.servers.chat"))
