"""Outbound HTTP to OAuth providers, with an SSRF guard.

Provider URLs are entered by org admins and come from discovery documents: untrusted. Before each
request the host is resolved and every address must be public (not private, loopback,
link-local, multicast, reserved or unspecified) unless CREDENTIALS_ALLOW_PRIVATE_URLS is on.
Redirects are never followed (OAuth endpoints answer directly; a redirect is an error), so no
hop escapes the check. Plain http is accepted only where private addresses are allowed (a
loopback test or trial provider).

Known gap: the address is checked, then httpx resolves again when connecting; a DNS answer that
changes in between (rebinding) is not caught. Pin egress with a proxy or firewall in production.
"""

import ipaddress
import socket
import urllib.parse
from typing import Any

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
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURLError(
            f"The host {parts.hostname!r} does not resolve; check the URL.", field=field
        ) from exc
    for info in infos:
        if not _is_public(str(info[4][0])):
            raise UnsafeURLError(
                f"The host {parts.hostname!r} resolves to a private, loopback or link-local "
                "address; requests there are refused (an operator can allow them with "
                "CREDENTIALS_ALLOW_PRIVATE_URLS).",
                field=field,
            )
    return url


def _client() -> httpx2.Client:
    timeout = float(getattr(settings, "CREDENTIALS_HTTP_TIMEOUT", 10.0))
    return httpx2.Client(
        timeout=timeout,
        follow_redirects=False,
        headers={"User-Agent": "mcp-governance-gateway/credentials", "Accept": "application/json"},
    )


def request(method: str, url: str, **kwargs: Any) -> httpx2.Response:
    """One checked request. Network failures become a transient ProviderError (never the URL's
    query string or any credential in the message)."""
    check_url(url)
    host = urllib.parse.urlsplit(url).hostname
    try:
        with _client() as client:
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
