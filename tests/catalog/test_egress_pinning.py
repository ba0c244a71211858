"""The catalog's HTTP upstream path (open_client -> GuardedTransport: tool fetch, drift listing,
the gateway's SDK fallback) connects only to the addresses the egress check approved, never to
a second DNS answer, and still verifies TLS against the host name. Real servers and sockets on
127.0.0.1; the guard's resolver (`catalog.upstream._resolve`) is replaced to play a DNS server,
and the TLS tests add a throwaway CA to the trust store."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpcore2
import httpx2
import pytest
import uvicorn
from mcp.server.transport_security import TransportSecuritySettings

from catalog import upstream
from catalog.errors import UpstreamError
from catalog.upstream import GuardedTransport, ServerConnectionConfig, list_tools_sync
from tests.peers.fault_server import DEFAULT_TOOLS, build_server
from tests.peers.local_tls import Certificates, RecordingServer, make_certificates

PUBLIC_ADDRESS = "93.184.215.14"  # a global address: passes the check (never connected to)


def http(url: str, host: str) -> ServerConnectionConfig:
    return ServerConnectionConfig(
        org_id=1, server_id=1, server_slug="t", transport="http", url=url, egress_hosts=(host,)
    )


def assert_system_resolver_does_not_know(name: str) -> None:
    """Precondition: only the guard's answer can take a connection to `name` anywhere."""
    with pytest.raises(OSError):
        socket.getaddrinfo(name, 80)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The guard's DNS: name -> addresses (edit the dict to change an answer). Every lookup is
    recorded under "asked"."""
    answers: dict[str, list[str]] = {"asked": []}

    async def resolve(host: str, port: int) -> list[str]:
        answers["asked"].append(host)
        if host not in answers:
            raise UpstreamError(f"The host {host} cannot be resolved.", code="unreachable")
        return list(answers[host])

    monkeypatch.setattr(upstream, "_resolve", resolve)
    return answers


@contextmanager
def mcp_upstream(names: list[str], certificates: Certificates | None = None) -> Iterator[int]:
    """The fault server's tools over Streamable HTTP on 127.0.0.1 (HTTPS with `certificates`),
    accepting the Host names `names`; yields its port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    hosts = [f"{name}:{port}" for name in names]
    app = build_server(None).streamable_http_app(
        stateless_http=True,
        transport_security=TransportSecuritySettings(allowed_hosts=hosts, allowed_origins=[]),
        host="127.0.0.1",
    )
    tls = (
        {"ssl_certfile": str(certificates.cert_file), "ssl_keyfile": str(certificates.key_file)}
        if certificates
        else {}
    )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **tls))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the MCP upstream did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def silent_listener() -> Iterator[tuple[int, list[int]]]:
    """A TCP port on 127.0.0.1 and, after the block, the count of connections made to it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        made: list[int] = []
        yield listener.getsockname()[1], made
        listener.setblocking(False)
        while True:
            try:
                listener.accept()[0].close()
            except BlockingIOError:
                break
            made.append(1)


def test_tool_fetch_connects_to_the_address_the_guard_resolved(dns) -> None:
    """`upstream.test` is unknown to this machine's resolver: the listing can only work if the
    connection goes to the address the guard resolved and approved (127.0.0.1)."""
    assert_system_resolver_does_not_know("upstream.test")
    dns["upstream.test"] = ["127.0.0.1"]
    with mcp_upstream(["upstream.test"]) as port:
        listing = list_tools_sync(http(f"http://upstream.test:{port}/mcp", "upstream.test"))
    assert {t.name for t in listing.tools} == {t["name"] for t in DEFAULT_TOOLS}
    assert set(dns["asked"]) == {"upstream.test"}


def test_an_address_the_guard_refuses_is_never_connected_to(settings, dns) -> None:
    settings.CATALOG_ALLOW_LOOPBACK = False
    dns["upstream.test"] = ["127.0.0.1"]
    with silent_listener() as (port, made), pytest.raises(UpstreamError) as refused:
        list_tools_sync(http(f"http://upstream.test:{port}/mcp", "upstream.test"))
    assert refused.value.code == "egress_refused"
    assert "loopback address (127.0.0.1)" in refused.value.message
    assert made == []


def test_a_dns_answer_that_changes_after_the_check_is_refused_at_connect(
    settings, dns, monkeypatch
) -> None:
    """Rebinding: every egress check (before the session, before each request) sees a public
    address; the lookup made for the connection itself answers 127.0.0.1. The connection is
    refused with the egress error (not a vague "unreachable"), and nothing reaches 127.0.0.1."""
    settings.CATALOG_ALLOW_LOOPBACK = False
    settings.CATALOG_CONNECT_TIMEOUT = 3.0
    real_check = upstream.check_egress
    checks: list[str] = []

    async def check_then_rebind(url: str, egress_hosts: Iterable[str]) -> None:
        dns["upstream.test"] = [PUBLIC_ADDRESS]
        await real_check(url, egress_hosts)
        checks.append(url)
        dns["upstream.test"] = ["127.0.0.1"]

    monkeypatch.setattr(upstream, "check_egress", check_then_rebind)
    dns["upstream.test"] = ["127.0.0.1"]
    with silent_listener() as (port, made), pytest.raises(UpstreamError) as refused:
        list_tools_sync(http(f"http://upstream.test:{port}/mcp", "upstream.test"))
    assert len(checks) >= 2  # open_client's check and the transport's per-request check passed
    assert refused.value.code == "egress_refused"
    assert "loopback address (127.0.0.1)" in refused.value.message
    assert made == []


@pytest.fixture
def trusted_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Certificates:
    """A test CA that httpx2's default certificate store trusts (for this test only), and a
    server certificate it signed for `upstream.test` only."""
    certificates = make_certificates(tmp_path, ["upstream.test"])

    def default_ssl_context(*, _trust_env: bool = True) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(certificates.ca_file))

    monkeypatch.setattr(httpcore2, "default_ssl_context", default_ssl_context)
    return certificates


def test_tls_is_verified_against_the_host_name_not_the_address(dns, trusted_ca) -> None:
    """Connecting to the guard's address (127.0.0.1) keeps SNI and certificate verification on
    the URL's name: the certificate for `upstream.test` is accepted for upstream.test, and the
    same server reached as `impostor.test` (same address) is refused."""
    dns["upstream.test"] = ["127.0.0.1"]
    dns["impostor.test"] = ["127.0.0.1"]
    with mcp_upstream(["upstream.test", "impostor.test"], trusted_ca) as port:
        listing = list_tools_sync(http(f"https://upstream.test:{port}/mcp", "upstream.test"))
        with pytest.raises(UpstreamError) as wrong_name:
            list_tools_sync(http(f"https://impostor.test:{port}/mcp", "impostor.test"))
    assert {t.name for t in listing.tools} == {t["name"] for t in DEFAULT_TOOLS}
    assert wrong_name.value.code == "unreachable"
    # The admin is told why, not "connection refused": the certificate names another host.
    assert "TLS certificate the gateway cannot verify" in str(wrong_name.value)
    assert "Hostname mismatch" in str(wrong_name.value)


def test_the_transport_sends_sni_and_refuses_a_certificate_for_another_name(
    dns, trusted_ca
) -> None:
    """GuardedTransport on its own (what open_client wraps): the TLS server sees the host name
    as SNI and the Host header; a name the certificate does not cover fails the handshake, so
    the server answers no request."""
    dns["upstream.test"] = ["127.0.0.1"]
    dns["impostor.test"] = ["127.0.0.1"]

    async def get(url: str, host: str) -> httpx2.Response:
        transport = GuardedTransport((host,), max_bytes=1_000_000)
        async with httpx2.AsyncClient(transport=transport) as client:
            return await client.get(url)

    with RecordingServer(certificates=trusted_ca) as server:
        good = anyio.run(get, f"https://upstream.test:{server.port}/x", "upstream.test")
        with pytest.raises(httpx2.ConnectError, match="Hostname mismatch"):
            anyio.run(get, f"https://impostor.test:{server.port}/x", "impostor.test")
    assert good.json() == {"ok": True}
    assert server.server_names == ["upstream.test", "impostor.test"]
    assert server.requests == [("GET", "/x", f"upstream.test:{server.port}")]
    assert server.connections == 2


def test_every_approved_address_is_tried_in_order(dns) -> None:
    """An approved address that refuses connections does not end the attempt: the next address
    the guard approved is used."""
    dns["upstream.test"] = ["127.0.0.2", "127.0.0.1"]  # the server listens on 127.0.0.1 only

    async def get(url: str) -> httpx2.Response:
        transport = GuardedTransport(("upstream.test",), max_bytes=1_000_000)
        async with httpx2.AsyncClient(transport=transport) as client:
            return await client.get(url)

    with RecordingServer() as server:
        response = anyio.run(get, f"http://upstream.test:{server.port}/x")
    assert response.json() == {"ok": True}
    assert server.connections == 1
