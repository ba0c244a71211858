"""Talking to upstream MCP servers: the one place that opens an MCP client to a catalog server.

    config = server_connection_config(server)            # plain data, secrets decrypted
    async with open_client(config, headers=None, connect_timeout=5) as client:
        await client.call_tool("echo", {"message": "hi"})
    listing = await list_tools(config)                   # all pages, capped, validated

What is enforced here, for every caller (tool fetch, drift sync, the gateway's pools):
- Egress (HTTP): the URL's host must be one of the server's declared egress hosts, and every
  address it resolves to must be public unless the operator allows private networks
  (CATALOG_ALLOW_PRIVATE_NETWORKS) or loopback (CATALOG_ALLOW_LOOPBACK). It is checked on every
  request the client sends, so a redirect or a DNS change cannot slip past it, and again by the
  transport's network backend for every new connection, which then connects only to the
  addresses that check approved (never to a second DNS answer: a rebinding between check and
  connect cannot move it). TLS is still verified against the URL's host name (SNI too).
- Size: a response body over CATALOG_MAX_RESPONSE_BYTES, a stdio line over the same cap, or a
  stdio server that writes only noise ends the session with a clear error instead of growing
  memory.
- Sandbox (stdio): the command runs under bubblewrap when it is installed: no network unless
  the server declares egress hosts, a read-only view of the system, a private /tmp, no host
  files beyond the interpreter and the paths the operator lists, and prlimit CPU / memory /
  process / file limits. Without bwrap, CATALOG_REQUIRE_SANDBOX (default: on unless DEBUG)
  refuses to start it.

Failures raise `UpstreamError` with a `code` (unreachable, timeout, not_mcp, too_large,
too_many_tools, invalid_definitions, egress_refused, sandbox_unavailable, exited, protocol,
auth_required) and a message for the user; secret values never appear in it.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import queue
import shutil
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from subprocess import PIPE
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpcore2
import httpx2
import mcp_types
from django.conf import settings
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage

from catalog.definitions import ToolDefinition, from_mcp, validate_listing
from catalog.errors import UpstreamError

logger = logging.getLogger(__name__)

STDERR_TAIL_BYTES = 2000
# Inside the sandbox /tmp is a private, empty tmpfs (never the host's /tmp).
SANDBOX_TMP = "/tmp"  # noqa: S108
NOISE_LINE_LIMIT = 200


# --- Plain-data connection config ------------------------------------------------------------


@dataclass(frozen=True)
class ServerConnectionConfig:
    """Everything needed to reach one server, with no ORM access. Secret values (static headers,
    stdio env) are decrypted and kept out of repr."""

    org_id: int
    server_id: int
    server_slug: str
    transport: str  # "http" | "stdio"
    url: str = ""
    egress_hosts: tuple[str, ...] = ()
    auth_mode: str = "none"
    oauth_provider_id: int | None = None
    static_headers: dict[str, str] = field(default_factory=dict, repr=False)
    command: str = ""
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict, repr=False)
    working_dir: str = ""
    approved_version_id: int | None = None

    def secret_values(self) -> list[str]:
        return [v for v in (*self.static_headers.values(), *self.env.values()) if len(v) >= 4]


def server_connection_config(server: Any) -> ServerConnectionConfig:
    """The plain-data config of a catalog Server (decrypts its secrets through the vault)."""
    from catalog.secrets import server_env, server_static_headers

    return ServerConnectionConfig(
        org_id=server.organization_id,
        server_id=server.pk,
        server_slug=server.slug,
        transport=server.transport,
        url=server.url,
        egress_hosts=tuple(server.egress_hosts or ()),
        auth_mode=server.auth_mode,
        oauth_provider_id=getattr(server, "oauth_provider_id", None),
        static_headers=server_static_headers(server),
        command=server.command,
        args=tuple(server.args or ()),
        env=server_env(server),
        working_dir=server.working_dir,
        approved_version_id=server.approved_version_id,
    )


# --- Egress ----------------------------------------------------------------------------------


def host_allowed(host: str, egress_hosts: Iterable[str]) -> bool:
    """`host` matches an entry exactly, or a `*.example.com` entry as a strict subdomain."""
    host = host.lower().rstrip(".")
    for entry in egress_hosts:
        entry = entry.lower().strip().rstrip(".")
        if entry.startswith("*."):
            if host.endswith(entry[1:]) and host != entry[2:]:
                return True
        elif host == entry:
            return True
    return False


def _address_refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why connecting to `ip` is refused by the operator's settings, or None."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        if settings.CATALOG_ALLOW_LOOPBACK or settings.CATALOG_ALLOW_PRIVATE_NETWORKS:
            return None
        return "a loopback address"
    if ip.is_link_local:
        return None if settings.CATALOG_ALLOW_PRIVATE_NETWORKS else "a link-local address"
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return "a reserved address"
    if ip.is_private or not ip.is_global:
        return None if settings.CATALOG_ALLOW_PRIVATE_NETWORKS else "a private address"
    return None


_dns_cache: dict[tuple[str, int], tuple[float, list[str]]] = {}
_DNS_TTL = 30.0


async def _resolve(host: str, port: int) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    cached = _dns_cache.get((host, port))
    if cached and cached[0] > time.monotonic():
        return cached[1]
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UpstreamError(
            f"The host {host} cannot be resolved: check the URL.", code="unreachable"
        ) from exc
    addresses = sorted({str(info[4][0]) for info in infos})
    _dns_cache[(host, port)] = (time.monotonic() + _DNS_TTL, addresses)
    return addresses


def check_url_shape(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL, or UpstreamError."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UpstreamError(f"{url[:200]!r} is not a valid URL.", code="egress_refused") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UpstreamError(
            "The server URL must start with http:// or https:// and name a host.",
            code="egress_refused",
        )
    if parts.username or parts.password:
        raise UpstreamError(
            "Put credentials in static secret headers, not in the URL.", code="egress_refused"
        )
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def check_egress(url: str, egress_hosts: Iterable[str]) -> None:
    """Refuse `url` unless its host is declared and resolves only to allowed addresses."""
    await egress_addresses(url, egress_hosts)


async def egress_addresses(url: str, egress_hosts: Iterable[str]) -> list[str]:
    """`check_egress`, returning the addresses it approved: a client that connects to these
    (and not to a fresh DNS answer) cannot be moved elsewhere between the check and the
    connect (gateway.http1 and GuardedTransport do)."""
    _scheme, host, port = check_url_shape(url)
    return await egress_host_addresses(host, port, egress_hosts)


async def egress_host_addresses(host: str, port: int, egress_hosts: Iterable[str]) -> list[str]:
    """The addresses `host`:`port` may be connected to (its host declared, every address it
    resolves to allowed), or UpstreamError(code="egress_refused")."""
    egress_hosts = tuple(egress_hosts)
    if not host_allowed(host, egress_hosts):
        declared = ", ".join(egress_hosts) or "none"
        raise UpstreamError(
            f"The host {host} is not among the server's declared egress hosts ({declared}): "
            "add it to the egress hosts if this server really talks to it.",
            code="egress_refused",
        )
    addresses = await _resolve(host, port)
    for address in addresses:
        reason = _address_refusal(ipaddress.ip_address(address))
        if reason:
            raise UpstreamError(
                f"The host {host} resolves to {reason} ({address}), which this gateway does not "
                "connect to. An operator can allow it with CATALOG_ALLOW_PRIVATE_NETWORKS "
                "(or CATALOG_ALLOW_LOOPBACK for 127.0.0.1).",
                code="egress_refused",
            )
    return addresses


class _CappedStream(httpx2.AsyncByteStream):
    def __init__(self, inner: Any, cap: int) -> None:
        self._inner = inner
        self._cap = cap

    async def __aiter__(self) -> AsyncIterator[bytes]:
        total = 0
        async for chunk in self._inner:
            total += len(chunk)
            if total > self._cap:
                raise UpstreamError(
                    f"The server sent a response larger than {self._cap // 1_000_000} MB "
                    "(CATALOG_MAX_RESPONSE_BYTES).",
                    code="too_large",
                )
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class PinnedNetworkBackend(httpcore2.AsyncNetworkBackend):
    """httpcore2 network backend that runs the egress check for every new connection and
    connects only to the addresses it approved, in order (the last connect error if none
    answers). httpcore2 still starts TLS with `server_hostname` = the URL's host, so the
    certificate is verified against the name, not the address."""

    def __init__(self, egress_hosts: Iterable[str]) -> None:
        self._egress = tuple(egress_hosts)
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        addresses = await egress_host_addresses(host, port, self._egress)
        error: Exception = httpcore2.ConnectError(f"{host} resolved to no address")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                error = exc
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("unix sockets are not an egress path")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def pinned_transport(egress_hosts: Iterable[str]) -> httpx2.AsyncHTTPTransport:
    """httpx2's own transport (its exception mapping, its defaults: no proxy variables) whose
    connection pool connects through `PinnedNetworkBackend`. httpx2 takes no network backend,
    so the one of the pool it built (its limits, its TLS settings) is swapped."""
    transport = httpx2.AsyncHTTPTransport(trust_env=False)
    transport._pool._network_backend = PinnedNetworkBackend(egress_hosts)
    return transport


class GuardedTransport(httpx2.AsyncBaseTransport):
    """httpx2 transport that checks egress on every request, connects only to the addresses
    the check approved (PinnedNetworkBackend), and caps response sizes."""

    def __init__(self, egress_hosts: Iterable[str], max_bytes: int) -> None:
        self._egress = tuple(egress_hosts)
        self._inner = pinned_transport(self._egress)
        self._max_bytes = max_bytes
        # The SDK folds HTTP statuses into generic JSON-RPC errors; keep the first failing one
        # so the user learns "HTTP 401" rather than "error response".
        self.error_status: int | None = None

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        await check_egress(str(request.url), self._egress)
        response = await self._inner.handle_async_request(request)
        if response.status_code >= 400 and self.error_status is None and request.method == "POST":
            self.error_status = response.status_code
        if request.method == "GET":  # the long-lived SSE stream: events are capped by the SDK
            return response
        return httpx2.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_CappedStream(response.stream, self._max_bytes),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


# --- stdio: sandbox and a bounded transport --------------------------------------------------


@dataclass
class StdioState:
    """What the stdio transport saw: for error messages after the session ends."""

    stderr_tail: bytearray = field(default_factory=bytearray)
    overflow: str = ""
    returncode: int | None = None
    sandboxed: bool = False


def bwrap_path() -> str | None:
    configured = settings.CATALOG_SANDBOX_BWRAP
    if configured == "":
        return None
    return shutil.which(configured or "bwrap")


def _child_path_env(command_dir: str) -> str:
    return os.pathsep.join(dict.fromkeys([command_dir, "/usr/local/bin", "/usr/bin", "/bin"]))


def stdio_launch(
    config: ServerConnectionConfig,
) -> tuple[list[str], dict[str, str], str | None, bool]:
    """(argv, env, cwd, sandboxed) for a stdio server, sandboxed under bwrap when available."""
    if not config.command:
        raise UpstreamError("This stdio server has no command.", code="exited")
    resolved = shutil.which(config.command)
    if resolved is None:
        raise UpstreamError(
            f"The command {config.command!r} was not found on the gateway host.", code="exited"
        )
    resolved = os.path.abspath(resolved)
    command_dir = os.path.dirname(resolved)
    bwrap = bwrap_path()
    if bwrap is None:
        if settings.CATALOG_REQUIRE_SANDBOX:
            raise UpstreamError(
                "stdio servers must run in a sandbox, and bubblewrap (bwrap) is not installed on "
                "this host: install it (apt-get install bubblewrap) or, for a trial only, set "
                "CATALOG_REQUIRE_SANDBOX=false.",
                code="sandbox_unavailable",
            )
        logger.warning(
            "running stdio server %s WITHOUT a sandbox (bwrap not found)", config.server_slug
        )
        env = {
            k: os.environ[k]
            for k in ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER")
            if k in os.environ
        }
        env.update(config.env)
        return [resolved, *config.args], env, config.working_dir or None, False

    env = {
        "PATH": _child_path_env(command_dir),
        "HOME": SANDBOX_TMP,
        "LANG": "C.UTF-8",
        **config.env,
    }
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
    if config.egress_hosts:
        # Declared egress: the server gets the network (bwrap cannot filter by host; the
        # declared hosts are what reviewers approved). No egress declared: no network at all.
        argv.append("--share-net")
    for key, value in env.items():
        argv += ["--setenv", key, value]
    argv += [
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin",
        "--symlink", "usr/sbin", "/sbin",
        "--proc", "/proc",
        "--dev", "/dev",
        "--tmpfs", SANDBOX_TMP,
    ]  # fmt: skip
    etc = ["/etc/alternatives", "/etc/localtime", "/etc/ld.so.cache", "/etc/passwd", "/etc/group"]
    if config.egress_hosts:
        etc += [
            "/etc/resolv.conf",
            "/etc/hosts",
            "/etc/nsswitch.conf",
            "/etc/ssl",
            "/etc/ca-certificates",
        ]
    ro_paths = [*etc, sys.prefix, sys.base_prefix, command_dir, *settings.CATALOG_SANDBOX_RO_PATHS]
    if config.working_dir:
        ro_paths.append(config.working_dir)
    seen: set[str] = set()
    for path in ro_paths:
        real = os.path.realpath(path)
        if path in seen or not os.path.exists(path) or path.startswith("/usr/"):
            continue
        seen.add(path)
        argv += ["--ro-bind", real, path]
    argv += ["--chdir", config.working_dir or SANDBOX_TMP]
    prlimit = shutil.which("prlimit")
    argv.append("--")
    if prlimit:
        argv += [
            prlimit,
            f"--as={settings.CATALOG_SANDBOX_MEMORY_MB * 1024 * 1024}",
            f"--cpu={settings.CATALOG_SANDBOX_CPU_SECONDS}",
            f"--nproc={settings.CATALOG_SANDBOX_MAX_PROCESSES}",
            f"--nofile={settings.CATALOG_SANDBOX_MAX_FILES}",
            "--",
        ]
    argv += [resolved, *config.args]
    return argv, {}, None, True


def _parse_line(line: bytes) -> SessionMessage | None:
    try:
        return SessionMessage(mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError:
        return None


@asynccontextmanager
async def bounded_stdio(
    argv: list[str], env: dict[str, str], cwd: str | None, state: StdioState, max_line: int
) -> AsyncIterator[tuple[Any, Any]]:
    """An MCP stdio transport (like the SDK's) that caps line length and noise, keeps only a
    short stderr tail, and kills the whole process group when it ends."""
    try:
        process = await anyio.open_process(
            argv, stdin=PIPE, stdout=PIPE, stderr=PIPE, env=env, cwd=cwd, start_new_session=True
        )
    except OSError as exc:
        raise UpstreamError(
            f"The command could not be started: {exc.strerror}.", code="exited"
        ) from exc

    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)

    async def stdout_reader() -> None:
        buffer = bytearray()
        noise = 0
        try:
            async with read_writer:
                async for chunk in process.stdout:  # type: ignore[union-attr]
                    buffer += chunk
                    while (newline := buffer.find(b"\n")) >= 0:
                        line = bytes(buffer[:newline])
                        del buffer[: newline + 1]
                        if not line.strip():
                            continue
                        message = _parse_line(line)
                        if message is None:
                            noise += 1
                            if noise > NOISE_LINE_LIMIT:
                                state.overflow = (
                                    "the server wrote more than "
                                    f"{NOISE_LINE_LIMIT} lines that are not MCP messages"
                                )
                                return
                            continue
                        await read_writer.send(message)
                    if len(buffer) > max_line:
                        state.overflow = (
                            f"the server wrote a line longer than {max_line // 1_000_000} MB"
                        )
                        return
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
            pass

    async def stderr_reader() -> None:
        with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
            async for chunk in process.stderr:  # type: ignore[union-attr]
                state.stderr_tail += chunk
                del state.stderr_tail[:-STDERR_TAIL_BYTES]

    async def stdin_writer() -> None:
        try:
            async with write_reader:
                async for message in write_reader:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    await process.stdin.send((data + "\n").encode())  # type: ignore[union-attr]
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await read_writer.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(stdout_reader)
        tg.start_soon(stderr_reader)
        tg.start_soon(stdin_writer)
        try:
            yield read_stream, write_stream
        finally:
            with anyio.CancelScope(shield=True):
                await write_stream.aclose()
                with suppress(Exception):
                    await process.stdin.aclose()  # type: ignore[union-attr]
                with anyio.move_on_after(1.0):
                    await process.wait()
                if process.returncode is None:
                    with suppress(ProcessLookupError, PermissionError):
                        os.killpg(process.pid, signal.SIGKILL)
                    with anyio.move_on_after(2.0):
                        await process.wait()
                state.returncode = process.returncode
                await read_stream.aclose()
                with suppress(Exception), anyio.move_on_after(1.0):
                    await process.aclose()
            tg.cancel_scope.cancel()


# --- Opening a client ------------------------------------------------------------------------


def _flatten(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for inner in exc.exceptions:
            out += _flatten(inner)
        return out
    chain = [exc]
    while exc.__cause__ is not None and len(chain) < 5:
        exc = exc.__cause__
        chain.append(exc)
    return chain


def _certificate_failure(found: list[BaseException]) -> ssl.SSLCertVerificationError | None:
    """The certificate error behind a connect failure, if any: httpcore raises its ConnectError
    while handling the ssl error (its __context__, not its __cause__)."""
    for item in found:
        seen = 0
        current: BaseException | None = item
        while current is not None and seen < 5:
            if isinstance(current, ssl.SSLCertVerificationError):
                return current
            current = current.__cause__ or current.__context__
            seen += 1
    return None


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def classify_error(
    exc: BaseException,
    *,
    where: str,
    secrets: list[str],
    state: StdioState | None = None,
    http_status: int | None = None,
) -> UpstreamError:
    """Turn whatever the SDK / transport raised into one UpstreamError with a useful message."""
    found = _flatten(exc)
    for item in found:
        if isinstance(item, UpstreamError):
            return item
    if http_status in (401, 403):
        return UpstreamError(
            f"{where} refused the gateway's credentials (HTTP {http_status}): check the "
            "server's upstream auth settings.",
            code="auth_required",
        )
    if http_status is not None:
        return UpstreamError(
            f"{where} answered HTTP {http_status}: this URL does not look like an MCP "
            "Streamable HTTP endpoint (it usually ends in /mcp).",
            code="not_mcp",
        )
    tail = ""
    if state is not None:
        if state.overflow:
            return UpstreamError(f"{where}: {state.overflow}.", code="too_large")
        stderr = state.stderr_tail.decode("utf-8", "replace").strip()
        if stderr:
            tail = " Its last output on stderr: " + _redact(stderr[-500:], secrets)
        if state.returncode is not None and not any(isinstance(i, UpstreamError) for i in found):
            return UpstreamError(
                f"{where} exited (status {state.returncode}) before it answered as an MCP "
                f"server.{tail}",
                code="exited",
            )
    tls = _certificate_failure(found)
    if tls is not None:
        # Not "unreachable": the server answered, with a certificate we must not trust.
        reason = tls.verify_message or tls.reason or "verification failed"
        return UpstreamError(
            f"{where} presented a TLS certificate the gateway cannot verify ({reason}): "
            "it must be valid for the URL's host name and issued by a trusted authority.",
            code="unreachable",
        )
    for item in found:
        if isinstance(item, httpx2.ConnectError | httpx2.ConnectTimeout):
            return UpstreamError(
                f"{where} is unreachable (connection refused or no route): check the URL and "
                "that the server is running.",
                code="unreachable",
            )
        if isinstance(item, httpx2.TimeoutException | TimeoutError):
            return UpstreamError(f"{where} did not answer in time.", code="timeout")
        if isinstance(item, httpx2.HTTPStatusError):
            status = item.response.status_code
            if status in (401, 403):
                return UpstreamError(
                    f"{where} refused the gateway's credentials (HTTP {status}): check the "
                    "server's upstream auth settings.",
                    code="auth_required",
                )
            return UpstreamError(
                f"{where} answered HTTP {status}: this URL does not look like an MCP "
                "Streamable HTTP endpoint (it usually ends in /mcp).",
                code="not_mcp",
            )
        if isinstance(item, MCPError):
            message = _redact(str(item.error.message if hasattr(item, "error") else item), secrets)
            lowered = message.lower()
            if state is None:  # HTTP: a failed handshake means the URL is not an MCP endpoint
                return UpstreamError(
                    f"{where} did not answer as an MCP server ({message[:200]}): this URL does "
                    "not look like an MCP Streamable HTTP endpoint.",
                    code="not_mcp",
                )
            if "closed" in lowered or "connection" in lowered:
                return UpstreamError(
                    f"{where} closed the connection before answering.{tail}", code="exited"
                )
            return UpstreamError(
                f"{where} answered with an MCP error: {message[:300]}", code="protocol"
            )
        if isinstance(item, httpx2.HTTPError):
            return UpstreamError(
                f"{where} failed at the HTTP level ({type(item).__name__}).", code="unreachable"
            )
    if state is not None and tail:
        return UpstreamError(f"{where} stopped answering before it spoke MCP.{tail}", code="exited")
    logger.warning("unclassified upstream failure for %s: %r", where, exc)
    return UpstreamError(
        f"{where} failed: {type(exc).__name__}. It may not be an MCP server.", code="protocol"
    )


def _describe(config: ServerConnectionConfig) -> str:
    if config.transport == "stdio":
        return f"The stdio server {config.server_slug!r}"
    return f"The server at {config.url}"


@asynccontextmanager
async def open_client(
    config: ServerConnectionConfig,
    *,
    headers: dict[str, str] | None = None,
    connect_timeout: float | None = None,
    total_timeout: float | None = None,
    read_timeout: float | None = None,
) -> AsyncIterator[Client]:
    """A connected `mcp.Client` for `config`. `headers` (e.g. the on-behalf-of user's bearer
    token) are sent over HTTP in addition to the server's static headers. `connect_timeout`
    bounds start-up and the handshake; `total_timeout` (None: unbounded, as for a pooled
    session) bounds the whole `async with` block; `read_timeout` bounds each request."""
    connect_timeout = connect_timeout or settings.CATALOG_CONNECT_TIMEOUT
    where = _describe(config)
    secrets = config.secret_values() + [v for v in (headers or {}).values() if len(v) >= 4]
    max_bytes = settings.CATALOG_MAX_RESPONSE_BYTES
    state: StdioState | None = None
    guarded: GuardedTransport | None = None
    if config.transport == "stdio":
        argv, env, cwd, sandboxed = stdio_launch(config)
        state = StdioState(sandboxed=sandboxed)
        transport: Any = bounded_stdio(argv, env, cwd, state, max_bytes)
    else:
        await check_egress(config.url, config.egress_hosts)
        guarded = GuardedTransport(config.egress_hosts, max_bytes)
        http = httpx2.AsyncClient(
            transport=guarded,
            headers={**config.static_headers, **(headers or {})},
            timeout=httpx2.Timeout(connect_timeout, read=read_timeout or 300.0),
        )
        transport = streamable_http_client(
            config.url, http_client=http, max_sse_event_size=max_bytes
        )
    started = anyio.current_time()
    entered = False
    try:
        with anyio.CancelScope(deadline=started + connect_timeout) as scope:
            client = Client(
                transport, read_timeout_seconds=read_timeout, cache=None, raise_exceptions=True
            )
            async with client:
                entered = True
                scope.deadline = started + total_timeout if total_timeout else math.inf
                yield client
        if scope.cancelled_caught:
            stage = "start and answer the handshake" if not entered else "finish"
            raise UpstreamError(
                f"{where} took too long to {stage} "
                f"({connect_timeout if not entered else total_timeout:g} s).",
                code="timeout",
            )
    except UpstreamError:
        raise
    except MCPError as exc:
        if entered:  # a tool-level protocol error inside the caller's block: not ours to rewrap
            raise
        raise classify_error(
            exc,
            where=where,
            secrets=secrets,
            state=state,
            http_status=guarded.error_status if guarded else None,
        ) from None
    except Exception as exc:
        if entered and not _is_transport_failure(exc):
            raise
        raise classify_error(
            exc,
            where=where,
            secrets=secrets,
            state=state,
            http_status=guarded.error_status if guarded else None,
        ) from None
    finally:
        if config.transport == "http":
            with anyio.CancelScope(shield=True):
                await http.aclose()


def _is_transport_failure(exc: BaseException) -> bool:
    return any(
        isinstance(
            item,
            UpstreamError
            | httpx2.HTTPError
            | OSError
            | anyio.BrokenResourceError
            | anyio.ClosedResourceError,
        )
        for item in _flatten(exc)
    )


# --- Listing tools ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolListing:
    tools: list[ToolDefinition]
    server_info: dict[str, Any]
    protocol_version: str


# progress(stage, tools_so_far): stage is "connecting" or "listing".
Progress = Callable[[str, int], None]


async def list_tools(
    config: ServerConnectionConfig,
    *,
    headers: dict[str, str] | None = None,
    connect_timeout: float | None = None,
    total_timeout: float | None = None,
    progress: Progress | None = None,
) -> ToolListing:
    """Every tool the server lists (all pages), validated; UpstreamError on any failure.
    Stops early when the count or page caps are exceeded. `progress` (if given) is called with
    ("connecting", 0), then ("listing", n) once connected and after every page."""
    total_timeout = total_timeout or settings.CATALOG_FETCH_TIMEOUT
    where = _describe(config)
    max_tools = settings.CATALOG_MAX_TOOLS
    raw: list[Any] = []
    report = progress or (lambda _stage, _count: None)
    report("connecting", 0)
    async with open_client(
        config,
        headers=headers,
        connect_timeout=connect_timeout,
        total_timeout=total_timeout,
        read_timeout=total_timeout,
    ) as client:
        report("listing", 0)
        info = client.server_info
        server_info = {"name": info.name, "version": info.version} if info else {}
        protocol_version = client.protocol_version
        cursor: str | None = None
        for _page in range(settings.CATALOG_MAX_LIST_PAGES):
            try:
                result = await client.list_tools(cursor=cursor)
            except MCPError as exc:
                raise UpstreamError(
                    f"{where} refused to list its tools: {str(exc)[:300]}", code="protocol"
                ) from None
            raw.extend(result.tools)
            report("listing", len(raw))
            if len(raw) > max_tools:
                break
            cursor = result.next_cursor
            if not cursor:
                break
        else:
            raise UpstreamError(
                f"{where} kept paginating its tool list past {settings.CATALOG_MAX_LIST_PAGES} "
                "pages.",
                code="too_many_tools",
            )
    tools = [from_mcp(tool) for tool in raw]
    validate_listing(tools)
    return ToolListing(tools=tools, server_info=server_info, protocol_version=protocol_version)


def list_tools_sync(
    config: ServerConnectionConfig, *, progress: Progress | None = None, **kwargs: Any
) -> ToolListing:
    """`list_tools` from synchronous code (views, services, Celery tasks).

    `progress` is called on *this* thread (so it may use the Django ORM, which refuses to run
    inside an event loop): the listing runs on a helper thread and hands its progress over a
    queue."""
    if progress is None:
        return anyio.run(lambda: list_tools(config, **kwargs))
    events: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["listing"] = anyio.run(
                lambda: list_tools(
                    config, progress=lambda stage, n: events.put((stage, n)), **kwargs
                )
            )
        except BaseException as exc:  # handed to the calling thread below
            outcome["error"] = exc
        finally:
            events.put(("", -1))

    worker = threading.Thread(target=run, name=f"list-tools-{config.server_slug}", daemon=True)
    worker.start()
    while True:
        stage, count = events.get()
        if count < 0:
            break
        progress(stage, count)
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["listing"]


__all__ = [
    "GuardedTransport",
    "ServerConnectionConfig",
    "StdioState",
    "ToolListing",
    "check_egress",
    "classify_error",
    "egress_addresses",
    "egress_host_addresses",
    "host_allowed",
    "list_tools",
    "list_tools_sync",
    "open_client",
    "server_connection_config",
    "stdio_launch",
]
