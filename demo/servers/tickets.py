"""Demo ticket tracker MCP server (a Jira stand-in for the daily-triage story).

State lives in memory and is re-seeded on every start, with timestamps relative to the
start time so "today's tickets" always exist. Run alone over stdio with
`python -m demo.servers.tickets --stdio`; `python -m demo.servers` serves it over HTTP.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from typing import Annotated, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from demo.servers.common import (
    ADDITIVE,
    DESTRUCTIVE,
    READ_ONLY,
    add_whoami_tool,
    isoformat,
    parse_since,
    utc_now,
)

TicketStatus = Literal["open", "in_progress", "blocked", "resolved", "closed"]
TicketPriority = Literal["low", "normal", "high", "urgent"]


class Comment(BaseModel):
    author: str
    body: str
    created_at: str


class Ticket(BaseModel):
    id: str
    title: str
    status: TicketStatus
    priority: TicketPriority
    reporter: str
    assignee: str | None
    labels: list[str]
    description: str
    created_at: str
    updated_at: str
    comments: list[Comment]


class TicketSummary(BaseModel):
    id: str
    title: str
    status: TicketStatus
    priority: TicketPriority
    assignee: str | None
    updated_at: str


class TicketList(BaseModel):
    count: int
    tickets: list[TicketSummary]


class DeletedTicket(BaseModel):
    id: str
    deleted: bool


# (id, title, status, priority, reporter, assignee, labels, description, age of last update)
_SEED: tuple[tuple[str, str, str, str, str, str | None, list[str], str, timedelta], ...] = (
    (
        "TCK-101",
        "Checkout returns HTTP 500 for customers in the EU region",
        "open",
        "urgent",
        "maria.lopez",
        None,
        ["checkout", "payments", "customer-impact"],
        "Since this morning's deploy, about 4% of EU checkouts fail with a 500 from the "
        "payment-intent service. US traffic is unaffected.",
        timedelta(minutes=40),
    ),
    (
        "TCK-102",
        "Password reset emails arrive 20+ minutes late",
        "in_progress",
        "high",
        "support-bot",
        "devon.park",
        ["email", "auth"],
        "Customers report reset links expiring before the email arrives. The mail queue "
        "shows a backlog on the transactional provider.",
        timedelta(hours=3),
    ),
    (
        "TCK-103",
        "Add CSV export to the invoices list",
        "open",
        "normal",
        "priya.shah",
        None,
        ["billing", "feature-request"],
        "Finance asks for a CSV export of the filtered invoices list for month-end close.",
        timedelta(hours=5),
    ),
    (
        "TCK-104",
        "Android app crashes when opening Settings on Android 15",
        "blocked",
        "high",
        "qa-team",
        "lena.fischer",
        ["mobile", "android", "crash"],
        "Reproducible on Pixel 8 with Android 15. Blocked on the upstream SDK fix.",
        timedelta(hours=26),
    ),
    (
        "TCK-105",
        "Typo in the onboarding email subject line",
        "resolved",
        "low",
        "marketing",
        "sam.okoro",
        ["email", "copy"],
        "'Welcom to Acme' should read 'Welcome to Acme'.",
        timedelta(days=3),
    ),
    (
        "TCK-106",
        "SSO login loops for customers using Okta",
        "open",
        "urgent",
        "maria.lopez",
        "devon.park",
        ["auth", "sso", "customer-impact"],
        "Three enterprise customers on Okta are redirected back to the login page after a "
        "successful sign-in. Started after the session cookie change.",
        timedelta(hours=2),
    ),
    (
        "TCK-107",
        "Rotate the staging database credentials",
        "closed",
        "normal",
        "security",
        "lena.fischer",
        ["security", "chore"],
        "Quarterly rotation of the staging database credentials.",
        timedelta(days=8),
    ),
)


class TicketStore:
    """In-memory tickets, re-seeded relative to `now` so the demo always has fresh ones."""

    def __init__(self, now: datetime | None = None) -> None:
        now = now or utc_now()
        self._tickets: dict[str, Ticket] = {}
        # How many writes happened since seeding: lets test fixtures restart only a dirty server.
        self.changes = 0
        for ticket_id, title, status, priority, reporter, assignee, labels, text, age in _SEED:
            updated = now - age
            self._tickets[ticket_id] = Ticket(
                id=ticket_id,
                title=title,
                status=status,  # type: ignore[arg-type]  # the seed above only uses valid values
                priority=priority,  # type: ignore[arg-type]
                reporter=reporter,
                assignee=assignee,
                labels=labels,
                description=text,
                created_at=isoformat(updated - timedelta(hours=6)),
                updated_at=isoformat(updated),
                comments=[],
            )

    def get(self, ticket_id: str) -> Ticket:
        ticket = self._tickets.get(ticket_id.strip().upper())
        if ticket is None:
            raise ToolError(f"Ticket {ticket_id!r} not found. Call list_tickets to see ticket ids.")
        return ticket

    def find(self, status: str | None, updated_since: datetime | None) -> list[Ticket]:
        tickets = [
            t
            for t in self._tickets.values()
            if (status is None or t.status == status)
            and (updated_since is None or parse_since(t.updated_at) >= updated_since)
        ]
        # Most recently updated first, id as a tie-breaker: a stable order for agents and tests.
        return sorted(tickets, key=lambda t: (t.updated_at, t.id), reverse=True)

    def update(self, ticket_id: str, status: str | None, comment: str | None) -> Ticket:
        ticket = self.get(ticket_id)
        now = isoformat(utc_now())
        if status is not None:
            ticket.status = status  # type: ignore[assignment]  # validated by the tool schema
        if comment is not None:
            ticket.comments.append(Comment(author="agent", body=comment, created_at=now))
        ticket.updated_at = now
        self.changes += 1
        return ticket

    def delete(self, ticket_id: str) -> str:
        ticket = self.get(ticket_id)
        del self._tickets[ticket.id]
        self.changes += 1
        return ticket.id


def _summary(ticket: Ticket) -> TicketSummary:
    return TicketSummary(
        id=ticket.id,
        title=ticket.title,
        status=ticket.status,
        priority=ticket.priority,
        assignee=ticket.assignee,
        updated_at=ticket.updated_at,
    )


TicketId = Annotated[str, Field(description="Ticket id, for example 'TCK-101'.", min_length=1)]


def build_server(store: TicketStore | None = None) -> MCPServer:
    """A tickets server over `store` (default: a freshly seeded one of its own)."""
    store = store if store is not None else TicketStore()
    server = MCPServer(
        name="demo-tickets",
        title="Demo ticket tracker",
        version="1.0.0",
        instructions=(
            "A small ticket tracker. Use list_tickets to find work (filter by status or by "
            "last update), get_ticket for details, update_ticket to change status or comment."
        ),
    )

    @server.tool(title="List tickets", annotations=READ_ONLY)
    async def list_tickets(
        status: Annotated[
            TicketStatus | None, Field(description="Only tickets in this status.")
        ] = None,
        updated_since: Annotated[
            str | None,
            Field(
                description="Only tickets updated at or after this ISO 8601 date or date-time "
                "(UTC when no offset is given), e.g. '2026-01-31' or '2026-01-31T09:00:00Z'."
            ),
        ] = None,
    ) -> TicketList:
        """List tickets, most recently updated first, filtered by status and/or update time."""
        since = parse_since(updated_since) if updated_since else None
        tickets = store.find(status, since)
        return TicketList(count=len(tickets), tickets=[_summary(t) for t in tickets])

    @server.tool(title="Get ticket", annotations=READ_ONLY)
    async def get_ticket(ticket_id: TicketId) -> Ticket:
        """Get one ticket with its description and comments."""
        return store.get(ticket_id)

    # Not idempotent: adding a comment twice leaves two comments.
    @server.tool(title="Update ticket", annotations=ADDITIVE)
    async def update_ticket(
        ticket_id: TicketId,
        status: Annotated[TicketStatus | None, Field(description="New status.")] = None,
        comment: Annotated[
            str | None,
            Field(description="A comment to add to the ticket.", min_length=1, max_length=4000),
        ] = None,
    ) -> Ticket:
        """Change a ticket's status and/or add a comment. Returns the updated ticket."""
        if status is None and comment is None:
            raise ToolError("Nothing to update: give a new status, a comment, or both.")
        return store.update(ticket_id, status, comment)

    @server.tool(title="Delete ticket", annotations=DESTRUCTIVE)
    async def delete_ticket(ticket_id: TicketId) -> DeletedTicket:
        """Permanently delete a ticket and its comments. This cannot be undone."""
        return DeletedTicket(id=store.delete(ticket_id), deleted=True)

    add_whoami_tool(server)

    return server


if __name__ == "__main__":
    from demo.servers.cli import run_single

    sys.exit(run_single(build_server, prog="python -m demo.servers.tickets"))
