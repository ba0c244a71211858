"""One Starlette app serving every demo MCP server over Streamable HTTP.

`/tickets/mcp` and `/chat/mcp` are stateless, so any request stands alone and both protocol
eras work: 2026-07-28 clients (no session) and 2025-11-25 clients (initialize, then
requests without a server-side session). `GET /healthz` answers when the app is ready.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from demo.servers import chat, tickets

# Mounted at /<name>/mcp (the trial-mode seeding registers these URLs).
SERVER_NAMES = ("tickets", "chat")

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def transport_security(
    host: str, port: int, extra_hosts: Iterable[str] = ()
) -> TransportSecuritySettings:
    """Host and Origin allow-lists against DNS rebinding: the bound host, plus any extras.

    Every name is listed bare and with the port, because clients send either.
    """
    names = [f"[{host}]" if ":" in host and not host.startswith("[") else host, *extra_hosts]
    if names[0] in LOOPBACK_NAMES:
        names.extend(n for n in LOOPBACK_NAMES if n not in names)
    hosts = [h for name in names for h in (name, f"{name}:{port}")]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts,
        allowed_origins=[f"http://{h}" for h in hosts],
    )


def build_app(
    *, host: str = "127.0.0.1", port: int = 8765, extra_allowed_hosts: Iterable[str] = ()
) -> Starlette:
    """The ASGI app behind `python -m demo.servers`; `host`/`port` feed the Host allow-list."""
    security = transport_security(host, port, extra_allowed_hosts)
    ticket_store, chat_store = tickets.TicketStore(), chat.ChatStore()
    servers: dict[str, MCPServer] = {
        "tickets": tickets.build_server(ticket_store),
        "chat": chat.build_server(chat_store),
    }
    # Each sub-app carries a lifespan that starts its session manager, but Starlette does not
    # run the lifespans of mounted apps: the parent must run every manager itself, or the
    # first request fails with "Task group is not initialized".
    mounts = [
        Mount(
            f"/{name}",
            app=server.streamable_http_app(
                streamable_http_path="/mcp",
                stateless_http=True,
                json_response=True,
                transport_security=security,
                host=host,
            ),
        )
        for name, server in servers.items()
    ]

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for server in servers.values():
                await stack.enter_async_context(server.session_manager.run())
            yield

    async def healthz(_request: Request) -> JSONResponse:
        # `changes` counts writes since start: test fixtures restart a server that has any.
        changes = ticket_store.changes + chat_store.changes
        return JSONResponse({"status": "ok", "servers": sorted(servers), "changes": changes})

    routes = [Route("/healthz", healthz, methods=["GET"]), *mounts]
    return Starlette(routes=routes, lifespan=lifespan)
