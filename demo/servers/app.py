"""One Starlette app serving every demo MCP server over Streamable HTTP.

`/tickets/mcp` and `/chat/mcp` are stateless, so any request stands alone and both protocol
eras work: 2026-07-28 clients (no session) and 2025-11-25 clients (initialize, then
requests without a server-side session). `GET /healthz` answers when the app is ready.

`/oauth/...` is the demo OAuth authorization server (demo/servers/oauth.py). With
`chat_auth="oauth"` (the default) the chat server answers only requests carrying an access
token it issued (401 otherwise): the agent needs the member's own grant to post. The tickets
server stays open.
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

from demo.servers import chat, oauth, tickets

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


CHAT_AUTH_MODES = ("oauth", "none")


def build_app(
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    extra_allowed_hosts: Iterable[str] = (),
    chat_auth: str = "oauth",
    auth_store: oauth.AuthStore | None = None,
) -> Starlette:
    """The ASGI app behind `python -m demo.servers`; `host`/`port` feed the Host allow-list.
    `chat_auth="none"` leaves the chat server open (tests of its tools)."""
    if chat_auth not in CHAT_AUTH_MODES:
        raise ValueError(f"chat_auth must be one of {CHAT_AUTH_MODES}")
    security = transport_security(host, port, extra_allowed_hosts)
    ticket_store, chat_store = tickets.TicketStore(), chat.ChatStore()
    auth_store = auth_store if auth_store is not None else oauth.AuthStore()
    servers: dict[str, MCPServer] = {
        "tickets": tickets.build_server(ticket_store),
        "chat": chat.build_server(
            chat_store, identify=auth_store.account_for if chat_auth == "oauth" else None
        ),
    }
    # Each sub-app carries a lifespan that starts its session manager, but Starlette does not
    # run the lifespans of mounted apps: the parent must run every manager itself, or the
    # first request fails with "Task group is not initialized".
    mounts = []
    for name, server in servers.items():
        mcp_app = server.streamable_http_app(
            streamable_http_path="/mcp",
            stateless_http=True,
            json_response=True,
            transport_security=security,
            host=host,
        )
        if name == "chat" and chat_auth == "oauth":
            mcp_app = oauth.RequireBearer(mcp_app, auth_store, realm="demo-chat")
        mounts.append(Mount(f"/{name}", app=mcp_app))

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for server in servers.values():
                await stack.enter_async_context(server.session_manager.run())
            yield

    async def healthz(_request: Request) -> JSONResponse:
        # `changes` counts writes since start: test fixtures restart a server that has any.
        changes = ticket_store.changes + chat_store.changes
        return JSONResponse(
            {
                "status": "ok",
                "servers": sorted(servers),
                "changes": changes,
                "chat_auth": chat_auth,
                "oauth_tokens_issued": auth_store.issued,
                "chat_last_post_credential": chat_store.last_post_credential,
            }
        )

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        *oauth.build_routes(auth_store),
        *mounts,
    ]
    return Starlette(routes=routes, lifespan=lifespan)
