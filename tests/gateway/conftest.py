"""Gateway test fixtures: a real uvicorn serving `config.asgi:application` on a loopback port
(session-wide, in a thread of the test process, so it uses the test database), agents with keys,
and organization views compiled by the real policy engine against real upstream peers.

`gateway_catalog` builds an organization's catalog snapshot from the tool definitions a real
upstream lists (and their real definition hashes), compiles real policies with
`policies.engine.compile`, and installs that as the organization's view. It stands in for the
catalog and policies database layers only; everything from authentication to the upstream call
is the production code path.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from gateway import directory as directory_module
from gateway.auth import authenticators
from gateway.breaker import breakers
from gateway.directory import OrgView, ServerEntry, directory
from gateway.pool import UpstreamConfig
from policies.engine import compile
from policies.types import CatalogSnapshot, CatalogTool, PolicySpec, Subjects, ToolRules
from tenants.models import Organization
from tests.factories import AgentFactory, AgentKeyFactory
from tests.peers.process import free_port


@dataclass
class GatewayServer:
    base_url: str
    server: uvicorn.Server
    thread: threading.Thread

    def url(self, org: str, toolset: str | None = None) -> str:
        return f"{self.base_url}/mcp/{org}/" + (f"{toolset}/" if toolset else "")


@pytest.fixture(scope="session")
def _gateway_server(django_db_setup: None, django_db_blocker: Any) -> Iterator[GatewayServer]:
    from config.asgi import application

    port = free_port()
    config = uvicorn.Config(
        application, host="127.0.0.1", port=port, lifespan="on", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="gateway-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield GatewayServer(base_url=f"http://127.0.0.1:{port}", server=server, thread=thread)
    server.should_exit = True
    thread.join(timeout=10)


def _reset_gateway_state() -> None:
    directory.forget()
    for authenticator in authenticators():
        forget = getattr(authenticator, "forget_all", None)
        if forget:
            forget()
    breakers.reset()


@pytest.fixture
def gateway(_gateway_server: GatewayServer, transactional_db: None) -> Iterator[GatewayServer]:
    """The running gateway, with its in-process caches emptied (ids repeat between tests)."""
    _reset_gateway_state()
    yield _gateway_server
    _reset_gateway_state()


@pytest.fixture
def agent_key(org_a: Organization) -> Callable[..., tuple[Any, str]]:
    """`agent_key(slug="triage", acting_for=None, **agent_fields) -> (agent, plaintext key)`."""

    def make(slug: str = "triage-bot", **fields: Any) -> tuple[Any, str]:
        org = fields.pop("organization", org_a)
        agent = AgentFactory(organization=org, slug=slug, **fields)
        _, plaintext = AgentKeyFactory.issue(agent=agent)
        return agent, plaintext

    return make


# --------------------------------------------------------------------------- catalog views


async def _list_upstream(target: Any) -> list[Any]:
    async with Client(target, cache=None) as client:
        return list((await client.list_tools()).tools)


def upstream_tools(target: Any) -> list[Any]:
    """The live tool definitions of an upstream (URL or StdioServerParameters)."""
    return asyncio.run(_list_upstream(target))


def catalog_tools(server: str, tools: Sequence[Any], version_id: int = 1) -> list[CatalogTool]:
    from catalog.definitions import from_mcp

    result = []
    for tool in tools:
        definition = from_mcp(tool)
        result.append(
            CatalogTool(
                server=server,
                name=definition.name,
                title=definition.title,
                description=definition.description,
                input_schema=definition.input_schema,
                annotations=definition.annotations or {},
                definition_hash=definition.definition_hash,
                server_version_id=version_id,
                callable=True,
            )
        )
    return result


@dataclass
class CatalogServer:
    slug: str
    upstream: UpstreamConfig
    tools: list[CatalogTool]
    auth_mode: str = "none"
    static_headers: dict[str, str] | None = None


def http_server(slug: str, url: str, *, call_timeout: float | None = None) -> CatalogServer:
    tools = catalog_tools(slug, upstream_tools(url))
    config = UpstreamConfig(
        key=f"test:{slug}:{url}", label=slug, transport="http", url=url, call_timeout=call_timeout
    )
    return CatalogServer(slug=slug, upstream=config, tools=tools)


def stdio_server(
    slug: str, command: str, args: Sequence[str], env: dict[str, str] | None = None, **kw: Any
) -> CatalogServer:
    from mcp import StdioServerParameters

    params = StdioServerParameters(command=command, args=list(args), env=env)
    tools = catalog_tools(slug, upstream_tools(params))
    config = UpstreamConfig(
        key=f"test:{slug}:stdio:{command}:{' '.join(args)}",
        label=slug,
        transport="stdio",
        command=command,
        args=tuple(args),
        env=tuple((env or {}).items()),
        **kw,
    )
    return CatalogServer(slug=slug, upstream=config, tools=tools)


def bot_policy(
    name: str,
    *,
    tools: Sequence[str] = (),
    servers: Sequence[str] = (),
    deny: Sequence[str] = (),
    agent: str = "triage-bot",
    **fields: Any,
) -> PolicySpec:
    """A policy for one agent (the `agent_key` default): allow these tools or whole servers,
    deny these tools; other PolicySpec fields (e.g. `limits`) as given."""
    return PolicySpec(
        name=name,
        subjects=Subjects(agents=(agent,)),
        allow=ToolRules(tools=tuple(tools), servers=tuple(servers)),
        deny=ToolRules(tools=tuple(deny)),
        **fields,
    )


@pytest.fixture
def gateway_catalog(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., None]:
    """`gateway_catalog(org, servers=[...], policies=[PolicySpec...], tool_groups={...})`."""
    views: dict[int, Callable[[], OrgView]] = {}
    original = directory_module.load_org_view

    def install(
        org: Organization,
        *,
        servers: Sequence[CatalogServer],
        policies: Sequence[PolicySpec],
        tool_groups: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        snapshot = CatalogSnapshot(
            tools=tuple(t for s in servers for t in s.tools), tool_groups=tool_groups or {}
        )

        def build() -> OrgView:
            version = Organization.objects.values_list("policy_version", flat=True).get(pk=org.pk)
            return OrgView(
                org_id=org.pk,
                version=version,
                compiled=compile(snapshot, list(policies), str(version), org_id=org.pk),
                servers={
                    s.slug: ServerEntry(
                        slug=s.slug,
                        label=s.slug,
                        upstream=s.upstream,
                        auth_mode=s.auth_mode,
                        static_headers=s.static_headers or {},
                        version_id=1,
                    )
                    for s in servers
                },
            )

        views[org.pk] = build
        directory.forget(org.pk)

    def load(org_id: int) -> OrgView:
        if org_id in views:
            return views[org_id]()
        return original(org_id)

    monkeypatch.setattr(directory_module, "load_org_view", load)
    return install


# --------------------------------------------------------------------------- clients


@contextlib.asynccontextmanager
async def mcp_client(url: str, key: str | None, *, mode: str = "legacy", **headers: str):
    """The official SDK client against the gateway, in one protocol era."""
    import httpx2

    all_headers = dict(headers)
    if key is not None:
        all_headers["Authorization"] = f"Bearer {key}"
    async with (
        httpx2.AsyncClient(headers=all_headers, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode, cache=None) as client,
    ):
        yield client


ERAS = ["legacy", "2026-07-28"]


def post(
    url: str,
    body: Any,
    *,
    key: str | None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> httpx.Response:
    """A raw POST (for bad-input tests), 2025-era headers unless given."""
    all_headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
    }
    if key is not None:
        all_headers["Authorization"] = f"Bearer {key}"
    all_headers.update(headers or {})
    if raw is None:
        import json

        raw = json.dumps(body).encode()
    return httpx.post(url, content=raw, headers=all_headers, timeout=30)
