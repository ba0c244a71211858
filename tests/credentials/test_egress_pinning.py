"""credentials.egress (token, refresh, revocation, introspection, discovery requests) connects
only to the addresses its SSRF guard approved, never to a second DNS answer, and still verifies
TLS against the host name. A real HTTPS server on 127.0.0.1; the guard's resolver
(`credentials.egress._resolve`) is replaced to play a DNS server, and a throwaway CA is trusted
through SSL_CERT_FILE (which the client honours, as before)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from credentials import egress
from credentials.errors import ProviderError, UnsafeURLError
from tests.peers.local_tls import Certificates, RecordingServer, make_certificates

PUBLIC_ADDRESS = "93.184.215.14"  # a global address: passes the check (never connected to)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The guard's DNS: name -> addresses (edit the dict to change an answer); lookups are
    recorded under "asked"."""
    answers: dict[str, list[str]] = {"asked": []}

    def resolve(host: str, port: int) -> list[str]:
        answers["asked"].append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(answers[host])

    monkeypatch.setattr(egress, "_resolve", resolve)
    return answers


@pytest.fixture
def provider_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings) -> Certificates:
    """Private URLs refused (production), a CA the client trusts, a certificate for
    `provider.test` only."""
    settings.CREDENTIALS_ALLOW_PRIVATE_URLS = False
    certificates = make_certificates(tmp_path, ["provider.test"])
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca_file))
    return certificates


@pytest.fixture
def loopback_stands_in_for_a_public_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local server plays a provider on the internet: 127.0.0.1 counts as public (every
    other address keeps the real verdict)."""
    real = egress._is_public
    monkeypatch.setattr(egress, "_is_public", lambda a: a == "127.0.0.1" or real(a))


@pytest.mark.usefixtures("loopback_stands_in_for_a_public_address")
def test_a_token_request_goes_to_the_address_the_guard_approved(dns, provider_tls) -> None:
    """`provider.test` is unknown to this machine's resolver: the request can only arrive if the
    connection goes to the guard's answer; the name is resolved once, by the guard, and TLS is
    verified against it (SNI `provider.test`, the test CA's certificate for that name)."""
    with pytest.raises(OSError):
        socket.getaddrinfo("provider.test", 443)
    dns["provider.test"] = ["127.0.0.1"]
    with RecordingServer(certificates=provider_tls) as server:
        response = egress.request(
            "POST", f"https://provider.test:{server.port}/token", data={"grant_type": "x"}
        )
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert server.requests == [("POST", "/token", f"provider.test:{server.port}")]
    assert server.server_names == ["provider.test"]
    assert dns["asked"] == ["provider.test"]


@pytest.mark.usefixtures("loopback_stands_in_for_a_public_address")
def test_a_certificate_for_another_name_is_refused(dns, provider_tls) -> None:
    """The same server and address reached as `impostor.test`: the certificate does not cover
    that name, the handshake fails, no request is answered, and the caller gets the usual
    transient "cannot be reached" ProviderError."""
    dns["impostor.test"] = ["127.0.0.1"]
    with (
        RecordingServer(certificates=provider_tls) as server,
        pytest.raises(ProviderError) as failed,
    ):
        egress.request("POST", f"https://impostor.test:{server.port}/token")
    assert failed.value.transient
    assert "Hostname mismatch" in str(failed.value.__cause__)
    assert "The provider at impostor.test cannot be reached (ConnectError)" in str(failed.value)
    assert server.connections == 1 and server.requests == []


def test_an_answer_that_rebinds_to_a_private_address_is_refused_before_connecting(
    dns, provider_tls
) -> None:
    """The provider's URL passed the check when it was saved (a public answer); by the time of
    the token request the name answers 127.0.0.1. The request is refused with the SSRF
    guard's message and the local server receives no connection."""
    dns["provider.test"] = [PUBLIC_ADDRESS]
    with RecordingServer(certificates=provider_tls) as server:
        url = f"https://provider.test:{server.port}/token"
        assert egress.check_url(url, field="token_endpoint") == url
        dns["provider.test"] = ["127.0.0.1"]
        with pytest.raises(UnsafeURLError) as refused:
            egress.request("POST", url, data={"grant_type": "x"})
    assert "resolves to a private, loopback or link-local address" in str(refused.value)
    assert server.connections == 0


def test_a_name_that_does_not_resolve_is_refused_with_the_guards_message(dns, provider_tls) -> None:
    with pytest.raises(UnsafeURLError, match="does not resolve; check the URL"):
        egress.request("GET", "https://nowhere.test/.well-known/openid-configuration")
    assert dns["asked"] == ["nowhere.test"]


def test_with_private_urls_allowed_the_client_connects_by_name_unchecked(settings, dns) -> None:
    """CREDENTIALS_ALLOW_PRIVATE_URLS (tests, trials): no address check, as before; the system
    resolver finds `localhost` and the guard's resolver is never asked."""
    settings.CREDENTIALS_ALLOW_PRIVATE_URLS = True
    with RecordingServer() as server:
        response = egress.request("GET", f"http://localhost:{server.port}/x")
    assert response.json() == {"ok": True}
    assert dns["asked"] == []


def test_behind_an_egress_proxy_the_request_goes_through_the_proxy(settings, monkeypatch):
    """Deployments that pin egress with a proxy (as these docs advise) keep working: the
    request is sent to the proxy named in HTTPS_PROXY, after the host was checked here."""
    import http.server
    import threading

    seen: list[str] = []

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_CONNECT(self) -> None:
            seen.append(self.path)
            self.send_error(502)  # no upstream: enough to prove the proxy was used

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings.CREDENTIALS_ALLOW_PRIVATE_URLS = False
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.setattr(egress, "_resolve", lambda host, port: ["93.184.215.14"])
        with pytest.raises(ProviderError, match="cannot be reached"):
            egress.request("POST", "https://provider.test/token", data={"a": "b"})
        assert seen == ["provider.test:443"]
        # The host is still checked before anything is sent to the proxy.
        monkeypatch.setattr(egress, "_resolve", lambda host, port: ["10.0.0.5"])
        with pytest.raises(UnsafeURLError):
            egress.request("POST", "https://provider.test/token", data={"a": "b"})
        assert seen == ["provider.test:443"]
    finally:
        server.shutdown()
        server.server_close()
