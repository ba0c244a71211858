"""A small HTTP/1.1 client for the lean upstream call (gateway.lean).

Why not httpx2: for one JSON POST on a kept-alive connection, httpx2 and httpcore2 cost about
0.8-1 ms of CPU (request and response models, header normalisation, an idle-connection poll,
several layers of async context managers and locks per request); that was the largest part of
the gateway's own CPU per call. This client does the same exchange with one `transport.write`
and httptools' C response parser (the parser uvicorn uses for requests), fed by an asyncio
`Protocol`.

Scope, on purpose narrow: one origin per client (the pooled upstream's URL), HTTP/1.1 with
keep-alive, request bodies given as bytes, response bodies with Content-Length, chunked, or
delimited by the connection's close; TLS through `ssl.create_default_context()` (certificates
verified, SNI and hostname from the URL). No redirects, no proxies, no compression (the gateway
never asks for it and refuses an encoded body), no HTTP/2.

Egress: with the catalog's declared hosts, every new connection goes through
`catalog.upstream.egress_addresses` (the URL's host must be declared, and every address it
resolves to must be allowed) and then connects to one of exactly those addresses, so a DNS
answer that changes between the check and the connect cannot redirect the call (the catalog's
httpx2 transport, used by every other upstream path, does the same in its network backend).
Connections are kept idle for at most `idle_seconds` and dropped as soon as the server closes
them (the protocol sees the FIN; no poll per request).

Failures raise httpx2's transport exception classes (ConnectError, ConnectTimeout,
RemoteProtocolError, ReadError, LocalProtocolError) so gateway.pool classifies them as before:
a lost connection is retried only for read-only/idempotent tools and counts for the breaker.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import httptools
import httpx2

USER_AGENT = "mcp-governance-gateway"
# Stop reading from the socket while this much of a response waits for its reader.
_HIGH_WATER = 1 << 20
_LOW_WATER = 1 << 18
_FORBIDDEN_IN_HEADERS = ("\r", "\n", "\0")


class Response:
    """One response: status and headers as soon as they arrived, the body as it arrives."""

    __slots__ = (
        "_conn",
        "_wake",
        "buffered",
        "chunks",
        "complete",
        "content",
        "error",
        "headers",
        "headers_ready",
        "length_known",
        "status_code",
    )

    def __init__(self, conn: _Connection, loop: asyncio.AbstractEventLoop) -> None:
        self._conn = conn
        self.status_code = 0
        self.headers: dict[str, str] = {}
        self.headers_ready: asyncio.Future[None] = loop.create_future()
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.complete = False
        self.content = b""  # the whole body, once aread() has read it
        self.error: BaseException | None = None
        self.length_known = False  # Content-Length or chunked: the body does not end at close
        self._wake: asyncio.Future[None] | None = None

    def _notify(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        while True:
            if self.chunks:
                chunk = self.chunks.popleft()
                self.buffered -= len(chunk)
                if self.buffered < _LOW_WATER:
                    self._conn.resume()
                yield chunk
                continue
            if self.error is not None:
                raise self.error
            if self.complete:
                return
            self._wake = asyncio.get_running_loop().create_future()
            try:
                await self._wake
            finally:
                self._wake = None

    async def aread(self) -> bytes:
        self.content = b"".join([chunk async for chunk in self.aiter_bytes()])
        return self.content


class _Connection(asyncio.Protocol):
    """One kept-alive connection; at most one request in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.closed = False
        self.keep_alive = True
        self.idle_since = 0.0
        self._paused = False
        self._header_name = b""

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None or response.complete:
            # Bytes nobody asked for: the connection is out of step; never reuse it.
            self.keep_alive = False
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx2.RemoteProtocolError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(httpx2.RemoteProtocolError(f"invalid HTTP response ({exc})"))

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is None or response.complete:
            return
        if response.headers_ready.done() and not response.length_known and response.error is None:
            # HTTP/1.x: a body without Content-Length or chunking ends when the connection does.
            response.complete = True
            self.keep_alive = False
            response._notify()
            return
        if response.headers_ready.done():
            error: Exception = httpx2.ReadError("the server closed the connection mid-response")
        else:
            error = httpx2.RemoteProtocolError("Server disconnected without sending a response.")
        if exc is not None:
            error.__cause__ = exc
        self._fail(error)

    def pause_writing(self) -> None:  # request bodies are small; the kernel buffers them
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if key in ("content-length", "transfer-encoding"):
            self.response.length_known = True
        self.response.headers[key] = text

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        response.status_code = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            self._fail(
                httpx2.RemoteProtocolError(
                    f"the server sent a {encoding[:40]}-encoded body the gateway did not ask for"
                )
            )
            return
        if not response.headers_ready.done():
            response.headers_ready.set_result(None)

    def on_body(self, body: bytes) -> None:
        response = self.response
        assert response is not None
        response.chunks.append(body)
        response.buffered += len(body)
        if response.buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        response._notify()

    def on_message_complete(self) -> None:
        response = self.response
        assert response is not None
        response.complete = True
        response._notify()

    # -- the client's side

    def start(self, payload: bytes) -> Response:
        assert self.transport is not None
        self.response = Response(self, self.loop)
        self.transport.write(payload)
        return self.response

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def reusable(self) -> bool:
        response = self.response
        return (
            not self.closed
            and self.keep_alive
            and response is not None
            and response.complete
            and response.error is None
            and not response.chunks
        )

    def _fail(self, error: BaseException) -> None:
        response = self.response
        self.keep_alive = False
        if response is not None and response.error is None and not response.complete:
            response.error = error
            if not response.headers_ready.done():
                response.headers_ready.set_exception(error)
                response.headers_ready.exception()  # retrieved: a cancelled caller may be gone
            response._notify()
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Http1Client:
    """Keep-alive HTTP/1.1 to the one origin of `url` (see the module docstring).

    The small part of httpx2's interface that gateway.lean uses: `stream()`, `post()`,
    `delete()`, `aclose()` / `async with`."""

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        egress_hosts: tuple[str, ...] | None = None,
        connect_timeout: float = 10.0,
        max_connections: int = 100,
        max_idle: int = 20,
        idle_seconds: float = 4.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the upstream URL must be http(s)://host/...")
        self.url = url
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        default_port = self._port == (443 if parts.scheme == "https" else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._authority = host if default_port else f"{host}:{self._port}"
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._egress = egress_hosts
        self._connect_timeout = connect_timeout
        self._base = _checked({k.lower(): v for k, v in (headers or {}).items()})
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._max_idle = max_idle
        self._idle_seconds = idle_seconds
        self._closed = False
        self._heads: dict[tuple[str, tuple[tuple[str, str], ...]], bytes] = {}
        self.connections_opened = 0  # for tests and diagnostics

    @property
    def headers(self) -> dict[str, str]:
        return dict(self._base)

    # -- connections

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if self._egress is not None:
            from catalog.upstream import egress_addresses

            addresses = await egress_addresses(self.url, self._egress)
        else:
            addresses = [self._host]
        error: Exception | None = None
        for address in addresses:
            try:
                async with asyncio.timeout(self._connect_timeout):
                    _, conn = await loop.create_connection(
                        lambda: _Connection(loop),
                        address,
                        self._port,
                        ssl=self._ssl,
                        server_hostname=self._host if self._ssl is not None else None,
                    )
            except TimeoutError:
                error = httpx2.ConnectTimeout(f"connecting to {self._authority} timed out")
            except (OSError, ssl.SSLError) as exc:
                error = httpx2.ConnectError(f"{type(exc).__name__}: {exc}"[:300])
            else:
                self.connections_opened += 1
                return conn
        assert error is not None
        raise error

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < self._idle_seconds:
                return conn
            conn.close()
        return None

    def _release(self, conn: _Connection) -> None:
        if not self._closed and conn.reusable() and len(self._idle) < self._max_idle:
            conn.idle_since = time.monotonic()
            conn.response = None
            self._idle.append(conn)
        else:
            conn.close()

    def _payload(self, method: str, headers: Mapping[str, str] | None, body: bytes) -> bytes:
        key = (method, tuple(headers.items()) if headers else ())
        head = self._heads.get(key)
        if head is None:
            head = self._head(method, headers)
            if len(self._heads) >= 256:
                self._heads.clear()
            self._heads[key] = head
        return b"%scontent-length: %d\r\n\r\n%s" % (head, len(body), body)

    def _head(self, method: str, headers: Mapping[str, str] | None) -> bytes:
        """The request line and headers up to Content-Length: the same few combinations come
        back on every call (method, protocol version, tool name), so each is built and
        checked once."""
        merged = self._base
        if headers:
            merged = {**self._base, **_checked({k.lower(): v for k, v in headers.items()})}
        lines = [f"{method} {self._target} HTTP/1.1", f"host: {self._authority}"]
        if "user-agent" not in merged:
            lines.append(f"user-agent: {USER_AGENT}")
        lines += [f"{k}: {v}" for k, v in merged.items() if k not in ("host", "content-length")]
        try:
            return ("\r\n".join(lines) + "\r\n").encode("ascii")
        except UnicodeEncodeError as exc:
            raise httpx2.LocalProtocolError("a request header is not ASCII") from exc

    # -- requests

    async def open(
        self,
        method: str,
        url: str,
        *,
        content: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Send the request; returns once the response's status and headers arrived. The
        caller reads the body and must then call `close_response` (`stream` does both)."""
        if url != self.url:
            raise httpx2.LocalProtocolError("this client serves one URL only")
        if self._closed:
            raise httpx2.ConnectError("the client is closed")
        payload = self._payload(method, headers, content)
        await self._slots.acquire()
        conn: _Connection | None = None
        try:
            conn = self._take_idle() or await self._connect()
            response = conn.start(payload)
            await response.headers_ready
        except BaseException:
            if conn is not None:
                self._release(conn)
            self._slots.release()
            raise
        return response

    def close_response(self, response: Response) -> None:
        """Give the response's connection back (kept alive if the exchange ended cleanly)."""
        self._release(response._conn)
        self._slots.release()

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        content: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[Response]:
        response = await self.open(method, url, content=content, headers=headers)
        try:
            yield response
        finally:
            self.close_response(response)

    async def request(
        self,
        method: str,
        url: str,
        *,
        content: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        async with self.stream(method, url, content=content, headers=headers) as response:
            await response.aread()
            return response

    async def post(
        self, url: str, *, content: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> Response:
        return await self.request("POST", url, content=content, headers=headers)

    async def delete(self, url: str, *, headers: Mapping[str, str] | None = None) -> Response:
        return await self.request("DELETE", url, headers=headers)

    async def aclose(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()

    async def __aenter__(self) -> Http1Client:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


def _checked(headers: dict[str, str]) -> dict[str, str]:
    """Header names and values may not smuggle a line break (request splitting)."""
    for key, value in headers.items():
        if any(c in key or c in value for c in _FORBIDDEN_IN_HEADERS) or ":" in key or not key:
            raise httpx2.LocalProtocolError(f"invalid characters in the request header {key!r}")
    return headers
