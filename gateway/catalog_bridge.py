"""The gateway's one place that reads the catalog: approved servers as `ServerEntry` values.

Uses `catalog.upstream.server_connection_config` when the catalog provides it (so the gateway
connects exactly as tool sync does: sandboxed stdio, egress checks); servers the catalog cannot
describe yet are left out, which makes their tools fail closed with a clear error.
"""

from __future__ import annotations

from typing import Any

from gateway.directory import ServerEntry
from gateway.pool import UpstreamConfig


def servers_for_org(org: Any) -> dict[str, ServerEntry]:
    try:
        from catalog.models import SERVING_STATUSES, Server
    except ImportError:
        return {}
    entries: dict[str, ServerEntry] = {}
    servers = Server.objects.for_org(org).filter(
        status__in=SERVING_STATUSES, approved_version__isnull=False
    )
    for server in servers:
        entry = server_entry(server)
        if entry is not None:
            entries[server.slug] = entry
    return entries


def server_entry(server: Any) -> ServerEntry | None:
    """The gateway's entry for one serving server (decrypts its static secrets: sync, DB)."""
    from catalog.upstream import server_connection_config

    config = server_connection_config(server)
    provider = None
    if config.auth_mode == "oauth" and config.oauth_provider_id is not None:
        from credentials.models import OAuthProvider

        provider = OAuthProvider.objects.filter(pk=config.oauth_provider_id).first()
    # A new approved version, URL or command gets fresh pooled clients.
    key = (
        f"org:{server.organization_id}:server:{server.slug}:v:{server.approved_version_id}:"
        f"{server.updated_at.timestamp() if server.updated_at else 0}"
    )
    upstream = UpstreamConfig(
        key=key,
        label=server.slug,
        transport=server.transport,
        url=server.url,
        command=server.command,
        args=tuple(str(a) for a in (server.args or [])),
        catalog_config=config,
    )
    return ServerEntry(
        slug=server.slug,
        label=server.name,
        upstream=upstream,
        auth_mode=config.auth_mode,
        # open_client sends the static headers itself; kept here so the pool key differs
        # when they change.
        static_headers=dict(config.static_headers),
        provider=provider,
        version_id=server.approved_version_id,
        server_id=server.pk,
    )
