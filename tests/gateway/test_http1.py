"""gateway.http1, the lean path's HTTP/1.1 client, against a scripted TCP server: the framing it
must read (Content-Length, chunked, close-delimited), keep-alive reuse, a server that closes an
idle connection, broken servers, header injection, and the egress guard on every connection
(which connects to the checked address, not to a fresh DNS answer)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx2
import pytest

from catalog.errors import UpstreamError
from gateway.http1 import Http1Client

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    return head, body


def _run(handler: Handler, scenario: Callable[[str], Awaitable[object]]) -> object:
    async def main() -> object:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await scenario(f"http://127.0.0.1:{port}/mcp")
        finally:
            server.close()

    return asyncio.run(main())


def _keep_alive_server(
    responses: list[bytes], seen: list[bytes], connections: list[int]
) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while responses:
                head, body = await _read_request(reader)
                seen.append(head + body)
                writer.write(responses.pop(0))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return handler


def test_content_length_chunked_and_keep_alive_on_one_connection():
    responses = [
        b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"a": "b"}\n',
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n",
    ]
    seen: list[bytes] = []
    connections: list[int] = []

    async def scenario(url: str) -> object:
        async with Http1Client(url, headers={"Authorization": "Bearer user-token"}) as http:
            async with http.stream(
                "POST", url, content=b'{"x":1}', headers={"content-type": "application/json"}
            ) as first:
                one = (first.status_code, first.headers["content-type"], await first.aread())
            two = await http.post(url, content=b"{}")
            three = await http.post(url, content=b"{}")
            return one, (two.status_code, two.content), three.status_code, http.connections_opened

    one, two, three, opened = _run(_keep_alive_server(responses, seen, connections), scenario)
    assert one == (200, "application/json", b'{"a": "b"}\n')
    assert two == (200, b"hello world")
    assert three == 202
    assert opened == 1 and len(connections) == 1  # one kept-alive connection for three requests
    first = seen[0].decode()
    assert first.startswith("POST /mcp HTTP/1.1\r\n")
    assert "host: 127.0.0.1:" in first and "authorization: Bearer user-token" in first
    assert "content-length: 7" in first and first.endswith('{"x":1}')
    # The same request head with another body: its own length.
    third_sent = seen[2].decode()
    assert "content-length: 2\r\n\r\n{}" in third_sent and "content-length: 7" not in third_sent


def test_chunked_body_is_streamed_in_order():
    responses = [
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    ]

    async def scenario(url: str) -> object:
        async with (
            Http1Client(url) as http,
            http.stream("POST", url, content=b"{}") as response,
        ):
            return b"".join([c async for c in response.aiter_bytes()])

    assert _run(_keep_alive_server(responses, [], []), scenario) == b"hello world"


def test_body_delimited_by_close_and_connection_close_are_not_reused():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    async def scenario(url: str) -> object:
        async with Http1Client(url) as http:
            first = await http.post(url, content=b"{}")
            second = await http.post(url, content=b"{}")
            return first.content, second.content, http.connections_opened

    first, second, opened = _run(handler, scenario)
    assert first == second == b"until the end"
    assert opened == 2


def test_server_closing_an_idle_connection_costs_no_failed_call():
    """uvicorn closes kept-alive connections after 5 s idle: the client sees the FIN and opens a
    new connection for the next request instead of writing into a dead one."""
    connections: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # keep-alive was promised, but the server drops it right after

    async def scenario(url: str) -> object:
        async with Http1Client(url) as http:
            results = []
            for _ in range(3):
                response = await http.post(url, content=b"{}")
                results.append(response.content)
                await asyncio.sleep(0.05)  # the FIN arrives while the connection is idle
            return results, http.connections_opened

    results, opened = _run(handler, scenario)
    assert results == [b"ok"] * 3
    assert opened == 3 and len(connections) == 3


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"", httpx2.RemoteProtocolError),  # closed without a byte
        (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial", httpx2.ReadError),
        (b"NOT HTTP AT ALL\r\n\r\n", httpx2.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: 3\r\n\r\nabc",
         httpx2.RemoteProtocolError),
    ],
)  # fmt: skip
def test_broken_servers_raise_transport_errors_the_pool_classifies(reply, error):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(reply)
        await writer.drain()
        writer.close()

    async def scenario(url: str) -> object:
        async with Http1Client(url) as http:
            with pytest.raises(error):
                async with http.stream("POST", url, content=b"{}") as response:
                    await response.aread()
            return True

    assert _run(handler, scenario)


def test_connection_refused_is_a_connect_error():
    async def scenario() -> None:
        async with Http1Client("http://127.0.0.1:9/mcp", connect_timeout=2) as http:
            await http.post("http://127.0.0.1:9/mcp", content=b"{}")

    with pytest.raises(httpx2.ConnectError):
        asyncio.run(scenario())


@pytest.mark.parametrize(
    "headers",
    [{"X-Api-Key": "secret\r\nX-Injected: 1"}, {"Bad\nName": "v"}, {"x-nul": "a\0b"}],
)
def test_line_breaks_in_headers_are_refused_before_anything_is_sent(headers):
    with pytest.raises(httpx2.LocalProtocolError):
        Http1Client("http://127.0.0.1:9/mcp", headers=headers)

    async def per_request() -> int:
        refused = 0
        async with Http1Client("http://127.0.0.1:9/mcp") as http:
            for _ in range(2):  # the second time too (request heads are remembered)
                try:
                    await http.post("http://127.0.0.1:9/mcp", content=b"{}", headers=headers)
                except httpx2.LocalProtocolError:
                    refused += 1
        return refused

    assert asyncio.run(per_request()) == 2


def test_undeclared_host_and_refused_ranges_never_connect(settings):
    settings.CATALOG_ALLOW_LOOPBACK = False
    settings.CATALOG_ALLOW_PRIVATE_NETWORKS = False

    async def attempt(url: str, egress: tuple[str, ...]) -> str:
        async with Http1Client(url, egress_hosts=egress) as http:
            with pytest.raises(UpstreamError) as refused:
                await http.post(url, content=b"{}")
            assert http.connections_opened == 0
            return f"{refused.value.code}: {refused.value}"

    undeclared = asyncio.run(attempt("https://tickets.example.com/mcp", ("other.example.com",)))
    assert undeclared.startswith("egress_refused") and "declared egress hosts" in undeclared
    loopback = asyncio.run(attempt("http://127.0.0.1:9/mcp", ("127.0.0.1",)))
    assert loopback.startswith("egress_refused") and "loopback" in loopback


def test_connects_to_the_address_the_egress_check_approved(settings, monkeypatch):
    """The host name is resolved once, by the guard, and the connection goes to that address:
    `upstream.test` does not resolve on this machine, so only the checked answer can work."""
    from catalog import upstream

    settings.CATALOG_ALLOW_LOOPBACK = True
    resolved: list[str] = []

    async def fake_dns(host: str, port: int) -> list[str]:  # the resolver's answer, recorded
        resolved.append(host)
        return ["127.0.0.1"]

    monkeypatch.setattr(upstream, "_resolve", fake_dns)
    seen: list[bytes] = []

    async def scenario(url: str) -> object:
        port = url.rsplit(":", 1)[1].split("/")[0]
        named = f"http://upstream.test:{port}/mcp"
        async with Http1Client(named, egress_hosts=("upstream.test",)) as http:
            response = await http.post(named, content=b"{}")
            return response.status_code

    ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    assert _run(_keep_alive_server([ok], seen, []), scenario) == 200
    assert resolved == ["upstream.test"]
    assert b"host: upstream.test:" in seen[0]
