"""Demo step: the demo upstreams (tickets, chat) registered by the member, their tool
definitions recorded and approved by the admin. Idempotent.

The chat is reached with each user's own grant at the demo OAuth provider (auth_mode "oauth",
registered by the credentials step): the agent acting for Maria posts with Maria's token. The
tickets server needs no credential.

When the demo servers are not running (e.g. `bootstrap_demo` before `python -m demo.servers`),
the definitions are read in-process from `build_server()`: the same definitions the running
server serves, so the pinned hashes match once it starts.
"""

import logging
from typing import Any

import anyio
from mcp import Client

from catalog import services
from catalog.definitions import from_mcp
from catalog.errors import UpstreamError
from catalog.models import AuthMode, Server, ServerStatus
from catalog.upstream import ToolListing
from demo.seed.context import DemoContext

logger = logging.getLogger(__name__)

DEMO_SERVERS = [
    {
        "slug": "tickets",
        "name": "Tickets",
        "path": "/tickets/mcp",
        "module": "demo.servers.tickets",
        "description": "The demo ticket tracker (a Jira stand-in): list, read, update and delete tickets.",
        "purpose": "Daily triage: read today's tickets and update them.",
        "data_classification": "internal",
    },
    {
        "slug": "chat",
        "name": "Chat",
        "path": "/chat/mcp",
        "module": "demo.servers.chat",
        "description": "The demo team chat (a Slack stand-in): channels, messages, posting.",
        "purpose": "Daily triage: post the summary to #triage.",
        "data_classification": "internal",
        "oauth": True,
    },
]


def _in_process_listing(module: str) -> ToolListing:
    import importlib

    build_server = importlib.import_module(module).build_server

    async def fetch() -> ToolListing:
        async with Client(build_server(), mode="legacy") as client:
            result = await client.list_tools()
            info = client.server_info
            return ToolListing(
                tools=[from_mcp(t) for t in result.tools],
                server_info={"name": info.name, "version": info.version} if info else {},
                protocol_version=client.protocol_version,
            )

    return anyio.run(fetch)


def _auth(spec: dict, provider: Any) -> dict[str, Any]:
    if spec.get("oauth") and provider is not None:
        return {"auth_mode": AuthMode.OAUTH, "oauth_provider": provider}
    return {"auth_mode": AuthMode.NONE, "oauth_provider": None}


def seed(ctx: DemoContext) -> None:
    org, owner, approver = ctx.org, ctx.member or ctx.admin, ctx.admin
    provider = ctx.objects.get("oauth_provider")
    registered = {}
    for spec in DEMO_SERVERS:
        server = Server.objects.for_org(org).filter(slug=spec["slug"]).first()
        auth = _auth(spec, provider)
        if server is None:
            server = services.server_create(
                org=org,
                actor=owner,
                name=spec["name"],
                slug=spec["slug"],
                url=ctx.upstream_base_url + spec["path"],
                description=spec["description"],
                purpose=spec["purpose"],
                data_classification=spec["data_classification"],
                tags=["demo"],
                **auth,
            )
        elif spec.get("oauth") and provider is not None and server.oauth_provider_id is None:
            # A demo seeded before the chat needed the member's grant: link it (re-reviewed below).
            server = services.server_update(org=org, actor=owner, server=server, **auth)
        if server.status != ServerStatus.APPROVED or server.connection_changed_since_approval:
            try:
                version = services.server_fetch_tools(org=org, actor=owner, server=server)
            except UpstreamError as exc:
                logger.info(
                    "demo %s not reachable (%s): recording definitions in-process",
                    spec["slug"],
                    exc.code,
                )
                listing = _in_process_listing(spec["module"])
                version = services.server_fetch_tools(
                    org=org, actor=owner, server=server, listing=listing
                )
            services.version_submit(org=org, actor=owner, version=version)
            services.version_approve(
                org=org,
                actor=approver,
                version=version,
                note="Demo servers shipped with the gateway: reviewed.",
                acknowledge_findings=True,
            )
            server.refresh_from_db()
        registered[spec["slug"]] = server
    ctx.objects["catalog_servers"] = registered
    ctx.summary["catalog"] = {
        slug: {"url": s.url, "status": s.status, "tools": s.approved_version.tools.count()}
        for slug, s in registered.items()
    }
