"""Long-lived upstream MCP clients, one per (server, credential), shared by concurrent calls.

A new MCP session costs one or two round trips (and a process start for stdio), so the gateway
keeps each connected `mcp.Client` open and reuses it. Each client is owned by a task of the
pool's task group (started by the ASGI lifespan): anyio requires a context manager to be exited
by the task that entered it, and request tasks come and go. A client whose connection breaks
(an HTTP upstream that went away, a stdio child that died) is dropped; the next call opens a new
one, which for stdio means a new child: the old one was reaped by the SDK's stdio transport.

Idle clients are closed after `GATEWAY_POOL_IDLE_SECONDS`; at most `GATEWAY_POOL_MAX_CLIENTS`
stay open (the least recently used is closed first).

For HTTP upstreams, `tools/call` itself goes out as one JSON-RPC POST on a pooled httpx2 client
beside the SDK client (gateway.lean: same egress guard, size cap, error classification and
output-schema check, about 0.8 ms less CPU per call); the SDK client negotiates the era, lists
tools for the drift check and serves stdio upstreams and whatever the lean path hands back.
`pool.stats` counts the calls each path served.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
from anyio.abc import TaskGroup
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT, CallToolResult

from gateway.conf import gateway_settings
from gateway.errors import ToolDrift, ToolFailure, UpstreamTimeout, UpstreamUnavailable
from gateway.lean import LeanUnsupported, LeanUpstream, ResponseTooLarge, WireResult, open_lean

logger = logging.getLogger(__name__)

# How often a pooled client re-reads the upstream's tool definitions to detect drift.
DRIFT_RECHECK_SECONDS = 60.0


@dataclass(frozen=True)
class UpstreamConfig:
    """How to reach one approved server (plain data, built from the catalog).

    `key` identifies the server and version (e.g. `org:7:server:tickets:v:3`): a new approved
    version or a changed URL gets fresh clients. `catalog_config` is the catalog's own connection
    config, handed back to `catalog.upstream.open_client` (sandboxing, egress checks) when that
    is available.
    """

    key: str
    label: str
    transport: str = "http"  # "http" | "stdio"
    url: str = ""
    command: str = ""
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    connect_timeout: float | None = None
    call_timeout: float | None = None
    catalog_config: Any = field(default=None, compare=False, repr=False)


def credential_fingerprint(headers: Mapping[str, str]) -> str:
    """A stable, non-reversible name for a credential (pool key; never the secret itself)."""
    if not headers:
        return "none"
    material = "\n".join(f"{k.lower()}:{v}" for k, v in sorted(headers.items()))
    return hashlib.sha256(material.encode()).hexdigest()[:32]


class _Pooled:
    """One connected client and the task that owns it."""

    def __init__(self, key: tuple[str, str]) -> None:
        self.key = key
        self.client: Client | None = None
        self.lean: LeanUpstream | None = None
        self.ready = anyio.Event()
        self.closed = anyio.Event()
        self.stop = anyio.Event()
        self.error: BaseException | None = None
        self.last_used = time.monotonic()
        self.in_flight = 0
        self.dead = False
        # Live definition hashes by tool name (for the drift check), and when they were read.
        self.hashes: dict[str, str] | None = None
        self.hashes_at = 0.0


@contextlib.asynccontextmanager
async def _open_client(config: UpstreamConfig, headers: Mapping[str, str]) -> AsyncIterator[Client]:
    settings = gateway_settings()
    connect_timeout = config.connect_timeout or settings.connect_timeout
    if config.catalog_config is not None:
        from catalog.upstream import open_client  # the catalog owns sandboxing and egress checks

        async with open_client(
            config.catalog_config,
            headers=dict(headers),
            connect_timeout=connect_timeout,
            total_timeout=None,
        ) as client:
            yield client
        return
    if config.transport == "stdio":
        params = StdioServerParameters(
            command=config.command, args=list(config.args), env=dict(config.env), cwd=config.cwd
        )
        async with Client(params, cache=None) as client:
            yield client
        return
    async with (
        httpx2.AsyncClient(
            headers=dict(headers),
            timeout=httpx2.Timeout(connect_timeout, read=None),
            follow_redirects=False,
        ) as http,
        Client(streamable_http_client(config.url, http_client=http), cache=None) as client,
    ):
        yield client


def _connect_failure_message(config: UpstreamConfig, error: BaseException | None) -> str:
    from catalog.errors import UpstreamError

    if isinstance(error, UpstreamError):
        return str(error)  # the catalog's message: precise, secrets already removed
    detail = type(error).__name__ if error is not None else "closed"
    return f"Could not connect to the upstream server '{config.label}' ({detail})."


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, MCPError):
        return exc.code == CONNECTION_CLOSED
    return isinstance(
        exc,
        OSError
        | anyio.ClosedResourceError
        | anyio.BrokenResourceError
        | anyio.EndOfStream
        | httpx2.TransportError
        | ConnectionError,
    )


class UpstreamPool:
    def __init__(self) -> None:
        self._clients: dict[tuple[str, str], _Pooled] = {}
        self._tg: TaskGroup | None = None
        # Calls served by the lean HTTP path and by the SDK client (tests, diagnostics).
        self.stats = {"lean": 0, "lean_fallback": 0, "sdk": 0}

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._reap_idle)
            try:
                yield
            finally:
                self._tg = None
                for pooled in list(self._clients.values()):
                    pooled.stop.set()
                self._clients.clear()
                tg.cancel_scope.cancel()

    @property
    def size(self) -> int:
        return len(self._clients)

    async def close_server(self, config_key: str) -> None:
        """Close every client of one server (e.g. after drift or a new version)."""
        for key, pooled in list(self._clients.items()):
            if key[0] == config_key:
                self._drop(pooled)

    async def _reap_idle(self) -> None:
        while True:
            await anyio.sleep(15)
            idle = gateway_settings().pool_idle_seconds
            now = time.monotonic()
            for pooled in list(self._clients.values()):
                if pooled.in_flight == 0 and now - pooled.last_used > idle:
                    self._drop(pooled)

    def _drop(self, pooled: _Pooled) -> None:
        pooled.dead = True
        if self._clients.get(pooled.key) is pooled:
            del self._clients[pooled.key]
        pooled.stop.set()

    async def _own(
        self, pooled: _Pooled, config: UpstreamConfig, headers: Mapping[str, str]
    ) -> None:
        connect_timeout = config.connect_timeout or gateway_settings().connect_timeout
        try:
            async with (
                _open_client(config, headers) as client,
                open_lean(config, headers, client, connect_timeout) as lean,
            ):
                pooled.client = client
                pooled.lean = lean
                pooled.ready.set()
                await pooled.stop.wait()
        except BaseException as exc:
            pooled.error = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            pooled.dead = True
            if self._clients.get(pooled.key) is pooled:
                del self._clients[pooled.key]
            pooled.ready.set()
            pooled.closed.set()

    async def _get(self, config: UpstreamConfig, headers: Mapping[str, str]) -> _Pooled:
        if self._tg is None:
            raise UpstreamUnavailable(
                "The gateway's upstream pool is not running (the ASGI lifespan did not start).",
                connect_failure=True,
            )
        key = (config.key, credential_fingerprint(headers))
        pooled = self._clients.get(key)
        if pooled is None or pooled.dead:
            settings = gateway_settings()
            if len(self._clients) >= settings.pool_max_clients:
                idle = [p for p in self._clients.values() if p.in_flight == 0]
                if idle:
                    self._drop(min(idle, key=lambda p: p.last_used))
            pooled = _Pooled(key)
            self._clients[key] = pooled
            self._tg.start_soon(self._own, pooled, config, headers)
        if not pooled.ready.is_set():
            timeout = (config.connect_timeout or gateway_settings().connect_timeout) + 1.0
            with anyio.move_on_after(timeout):
                await pooled.ready.wait()
            if not pooled.ready.is_set():
                self._drop(pooled)
                raise UpstreamUnavailable(
                    f"Could not connect to the upstream server '{config.label}' within {timeout:g} s.",
                    connect_failure=True,
                )
        if pooled.client is None or pooled.dead:
            raise UpstreamUnavailable(
                _connect_failure_message(config, pooled.error), connect_failure=True
            )
        return pooled

    async def call_tool(
        self,
        config: UpstreamConfig,
        headers: Mapping[str, str],
        tool: str,
        arguments: dict[str, Any],
        *,
        retry_connection_failure: bool,
        timeout: float | None = None,
        expected_hash: str | None = None,
    ) -> CallToolResult | WireResult:
        """Call `tool` upstream. Raises UpstreamUnavailable, UpstreamTimeout or ToolFailure.

        `retry_connection_failure`: retry once, on a fresh connection, when the connection
        failed (set only for tools annotated read-only or idempotent)."""
        attempts = 2 if retry_connection_failure else 1
        for attempt in range(attempts):
            try:
                return await self._call_once(
                    config, headers, tool, arguments, timeout, expected_hash
                )
            except UpstreamUnavailable:
                if attempt + 1 >= attempts:
                    raise
                logger.info("retrying %s on %s after a connection failure", tool, config.label)
        raise AssertionError("unreachable")

    async def _call_once(
        self,
        config: UpstreamConfig,
        headers: Mapping[str, str],
        tool: str,
        arguments: dict[str, Any],
        timeout: float | None,
        expected_hash: str | None,
    ) -> CallToolResult | WireResult:
        pooled = await self._get(config, headers)
        timeout = timeout or config.call_timeout or gateway_settings().call_timeout
        pooled.in_flight += 1
        pooled.last_used = time.monotonic()
        assert pooled.client is not None
        try:
            # asyncio's own timeout: anyio's cancel scope costs more per call, and the SDK
            # client's anyio code handles a native cancellation the same way.
            async with asyncio.timeout(timeout):
                if expected_hash:
                    await self._check_drift(pooled, config, tool, expected_hash)
                if pooled.lean is not None:
                    self.stats["lean"] += 1
                    try:
                        return await pooled.lean.call_tool(tool, arguments)
                    except LeanUnsupported:
                        self.stats["lean_fallback"] += 1  # nothing was executed upstream
                self.stats["sdk"] += 1
                return await pooled.client.call_tool(tool, arguments)
        except ToolDrift:
            raise
        except ResponseTooLarge as exc:
            raise ToolFailure(
                f"The upstream server '{config.label}' answered '{tool}' with too much data: {exc}",
                error_class="upstream",
            ) from exc
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"The upstream server '{config.label}' did not answer '{tool}' within {timeout:g} s."
            ) from exc
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED or pooled.dead:
                self._drop(pooled)
                raise UpstreamUnavailable(
                    f"The upstream server '{config.label}' closed the connection during the call."
                ) from exc
            if exc.code == REQUEST_TIMEOUT:
                raise UpstreamTimeout(
                    f"The upstream server '{config.label}' did not answer '{tool}' in time."
                ) from exc
            raise ToolFailure(
                f"The upstream server '{config.label}' refused the call: {exc.message} "
                f"(JSON-RPC error {exc.code}).",
                error_class="upstream",
            ) from exc
        except Exception as exc:
            from catalog.errors import UpstreamError

            if isinstance(exc, UpstreamError):  # the egress guard or the size cap (lean path)
                raise ToolFailure(
                    f"The call to the upstream server '{config.label}' was stopped: {exc}",
                    error_class="upstream",
                ) from exc
            if _is_connection_error(exc) or pooled.dead:
                self._drop(pooled)
                raise UpstreamUnavailable(
                    f"Lost the connection to the upstream server '{config.label}' "
                    f"({type(exc).__name__})."
                ) from exc
            raise ToolFailure(
                f"The upstream server '{config.label}' answered with something the gateway "
                f"cannot read ({type(exc).__name__}).",
                error_class="upstream",
            ) from exc
        finally:
            pooled.in_flight -= 1
            pooled.last_used = time.monotonic()

    async def _check_drift(
        self, pooled: _Pooled, config: UpstreamConfig, tool: str, expected_hash: str
    ) -> None:
        """Refuse the call when the upstream's live definition of `tool` is not the approved
        one. The listing is read once per connection and then every DRIFT_RECHECK_SECONDS."""
        from catalog.definitions import from_mcp

        now = time.monotonic()
        if pooled.hashes is None or now - pooled.hashes_at > DRIFT_RECHECK_SECONDS:
            assert pooled.client is not None
            hashes: dict[str, str] = {}
            cursor: str | None = None
            for _ in range(50):  # pages; a server that paginates forever is cut off
                listing = await pooled.client.list_tools(cursor=cursor)
                hashes.update({t.name: from_mcp(t).definition_hash for t in listing.tools})
                cursor = listing.next_cursor
                if not cursor:
                    break
            pooled.hashes = hashes
            pooled.hashes_at = now
        live = pooled.hashes.get(tool)
        if live != expected_hash:
            pooled.hashes = None  # re-read next time (after review, the server may be fixed)
            what = "no longer offers" if live is None else "changed the definition of"
            raise ToolDrift(
                f"The upstream server '{config.label}' {what} '{tool}' since it was approved; "
                "the call was refused and the tool is held for review.",
                live_hash=live,
            )


pool = UpstreamPool()
