"""Outbound HTTP to OAuth providers, with an SSRF guard.

Provider URLs are entered by org admins and come from discovery documents: untrusted. For each
connection the host is resolved once and every address must be public (not private, loopback,
link-local, multicast, reserved or unspecified) unless CREDENTIALS_ALLOW_PRIVATE_URLS is on; the
connection then goes only to those addresses (the check runs inside the HTTP client's network
backend, so a DNS answer that changes between check and connect, i.e. rebinding, cannot move
it). TLS is still verified against the URL's host name (SNI too). Redirects are never followed
(OAuth endpoints answer directly; a redirect is an error), so no hop escapes the check. Plain
http is accepted only where private addresses are allowed (a loopback test or trial provider);
then no address is checked and the client connects by name.

Behind an egress proxy (HTTPS_PROXY / HTTP_PROXY / ALL_PROXY naming one for the URL, NO_PROXY
not excluding it) the request goes through the proxy as before: the host is checked here, but
the proxy resolves the name itself, so pinning the address is the proxy's job there.
"""

import ipaddress
import socket
import urllib.parse
import urllib.request
from collections.abc import Iterable
from typing import Any

import httpcore2
import httpx2
from django.conf import settings

from credentials.errors import ProviderError, UnsafeURLError


def _private_allowed() -> bool:
    return bool(getattr(settings, "CREDENTIALS_ALLOW_PRIVATE_URLS", False))


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def check_url(url: str, *, field: str | None = None, resolve: bool = True) -> str:
    """Return `url` if requests to it are allowed, else raise UnsafeURLError (a clear message)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        raise UnsafeURLError("This is not a valid URL.", field=field) from exc
    allow_private = _private_allowed()
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeURLError("Use an https:// URL.", field=field)
    if parts.scheme == "http" and not allow_private:
        raise UnsafeURLError("Use an https:// URL (plain http is refused).", field=field)
    if parts.username or parts.password:
        raise UnsafeURLError("A URL must not carry a user name or password.", field=field)
    if allow_private or not resolve:
        return url
    public_addresses(parts.hostname, parts.port or 443, field=field)
    return url


def _resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, in the resolver's order (no duplicates)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def public_addresses(host: str, port: int, *, field: str | None = None) -> list[str]:
    """The addresses of `host`, all public, or UnsafeURLError (does not resolve / resolves to an
    address that is not public). The caller must connect to these, not resolve again."""
    try:
        addresses = _resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise UnsafeURLError(
            f"The host {host!r} does not resolve; check the URL.", field=field
        ) from exc
    if not addresses or not all(_is_public(address) for address in addresses):
        raise UnsafeURLError(
            f"The host {host!r} resolves to a private, loopback or link-local "
            "address; requests there are refused (an operator can allow them with "
            "CREDENTIALS_ALLOW_PRIVATE_URLS).",
            field=field,
        )
    return addresses


class PinnedNetworkBackend(httpcore2.NetworkBackend):
    """httpcore2 network backend that checks every new connection's host (`public_addresses`)
    and connects only to the addresses it approved, in order (the last connect error if none
    answers). httpcore2 starts TLS with `server_hostname` = the URL's host, so the certificate
    is verified against the name, not the address. Where private URLs are allowed nothing is
    checked and the name is connected to as is."""

    def __init__(self) -> None:
        self._inner = httpcore2.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        options = {"timeout": timeout, "local_address": local_address}
        if _private_allowed():
            return self._inner.connect_tcp(host, port, socket_options=socket_options, **options)
        error: Exception = httpcore2.ConnectError(f"{host} resolved to no address")
        for address in public_addresses(host, port):
            try:
                return self._inner.connect_tcp(
                    address, port, socket_options=socket_options, **options
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                error = exc
        raise error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        raise httpcore2.ConnectError("unix sockets are not an egress path")


def _transport() -> httpx2.HTTPTransport:
    """httpx2's own transport (its exception mapping) whose pool connects through
    PinnedNetworkBackend: httpx2 takes no network backend, so the one of the pool it built
    (its limits, its certificate store) is swapped."""
    transport = httpx2.HTTPTransport()
    transport._pool._network_backend = PinnedNetworkBackend()
    return transport


def _proxied(url: str) -> bool:
    """Whether the environment sends `url` through a proxy (the standard proxy variables, as
    httpx2 reads them with trust_env)."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


def _client(url: str) -> httpx2.Client:
    timeout = float(getattr(settings, "CREDENTIALS_HTTP_TIMEOUT", 10.0))
    return httpx2.Client(
        # Through a proxy: httpx2's own transport with the environment's proxy settings.
        transport=None if _proxied(url) else _transport(),
        timeout=timeout,
        follow_redirects=False,
        headers={"User-Agent": "mcp-governance-gateway/credentials", "Accept": "application/json"},
    )


def request(method: str, url: str, **kwargs: Any) -> httpx2.Response:
    """One checked request: the URL's shape here, its addresses when the client connects (see
    PinnedNetworkBackend; UnsafeURLError from there too). Network failures become a transient
    ProviderError (never the URL's query string or any credential in the message)."""
    # Through a proxy the connection is the proxy's, so the addresses are checked here instead.
    check_url(url, resolve=_proxied(url))
    host = urllib.parse.urlsplit(url).hostname
    try:
        with _client(url) as client:
            response = client.request(method, url, **kwargs)
    except httpx2.TimeoutException as exc:
        raise ProviderError(
            f"The provider at {host} did not answer in time.", transient=True
        ) from exc
    except httpx2.HTTPError as exc:
        raise ProviderError(
            f"The provider at {host} cannot be reached ({type(exc).__name__}).", transient=True
        ) from exc
    if response.is_redirect:
        raise ProviderError(
            f"The provider at {host} answered with a redirect; OAuth endpoints must answer "
            "directly (redirects are not followed).",
            status=response.status_code,
        )
    return response
