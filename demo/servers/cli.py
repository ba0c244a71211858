"""Command lines: `python -m demo.servers` (HTTP, all servers) and one server over stdio."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Sequence

from mcp.server.mcpserver import MCPServer


def run_single(
    build_server: Callable[[], MCPServer], *, prog: str, argv: Sequence[str] | None = None
) -> int:
    """Serve one demo server over stdio (the only transport a single server offers)."""
    parser = argparse.ArgumentParser(prog=prog, description="Serve one demo MCP server over stdio.")
    parser.add_argument(
        "--stdio", action="store_true", help="serve over stdin/stdout (the default and only mode)"
    )
    parser.parse_args(argv)
    server = build_server()
    # MCPServer configures root logging at INFO; per-request chatter on stderr helps nobody here.
    logging.getLogger().setLevel(logging.WARNING)
    server.run("stdio")
    return 0


def run_http(argv: Sequence[str] | None = None) -> int:
    """Serve every demo server over Streamable HTTP on one host and port."""
    import uvicorn

    from demo.servers import oauth
    from demo.servers.app import build_app

    parser = argparse.ArgumentParser(
        prog="python -m demo.servers",
        description="Serve the demo MCP servers at http://HOST:PORT/<name>/mcp (tickets, chat) "
        "and the demo OAuth server at http://HOST:PORT/oauth.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="the only address to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=8765, help="TCP port (default: %(default)s)")
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another Host header name to accept, e.g. a docker-compose service name (repeatable)",
    )
    parser.add_argument(
        "--chat-auth",
        default="oauth",
        choices=["oauth", "none"],
        help="oauth: the chat server needs an access token of the demo OAuth server at /oauth "
        "(default); none: it is open",
    )
    parser.add_argument(
        "--oauth-redirect-uri",
        action="append",
        default=[],
        metavar="URI",
        help="a redirect URI the demo OAuth server accepts (repeatable; default: "
        "$SITE_URL/oauth/callback, or http://127.0.0.1:8000/oauth/callback)",
    )
    parser.add_argument(
        "--oauth-access-token-ttl",
        type=int,
        default=900,
        metavar="SECONDS",
        help="lifetime of the demo OAuth server's access tokens (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"]
    )
    args = parser.parse_args(argv)
    redirect_uris = tuple(args.oauth_redirect_uri) or oauth.default_redirect_uris(
        os.environ.get("SITE_URL")
    )
    store = oauth.AuthStore(
        redirect_uris=redirect_uris, access_token_ttl=max(1, args.oauth_access_token_ttl)
    )
    app = build_app(
        host=args.host,
        port=args.port,
        extra_allowed_hosts=args.allow_host,
        chat_auth=args.chat_auth,
        auth_store=store,
    )
    # MCPServer configures root logging at INFO (a line per stateless request); follow --log-level.
    logging.getLogger().setLevel(args.log_level.upper())
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
