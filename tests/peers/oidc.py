"""Launch `tests/peers/oidc/provider.mjs`: a real OAuth server (oidc-provider 9.x) on loopback.

It plays a third-party service whose tokens the gateway's vault holds (a Slack / Jira
stand-in): authorization code + PKCE (required), opaque access tokens, refresh tokens
(rotating for the public client), revocation (RFC 7009) and introspection (RFC 7662).

    provider = start_oidc_provider(redirect_uris=["http://127.0.0.1:8000/oauth/callback"])
    provider.issuer, provider.confidential.client_id, provider.confidential.client_secret
    provider.metadata["token_endpoint"]
    callback_url = provider.authorize(authorization_url, redirect_uri)  # auto-approve mode
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx2

from tests.peers.npm import ensure_node_modules, node_executable
from tests.peers.process import ChildProcess, start_on_free_port

PROVIDER_SCRIPT = Path(__file__).resolve().parent / "oidc" / "provider.mjs"
DEFAULT_SCOPES = ("tickets:read", "tickets:write", "chat:read", "chat:write")
DEFAULT_RESOURCE = "https://api.peers.test/"
DEFAULT_REDIRECT_URI = "http://127.0.0.1:8000/oauth/callback"
DENY_ACCOUNT = "deny"
_MAX_REDIRECTS = 10


@dataclass(frozen=True)
class OAuthClient:
    client_id: str
    client_secret: str | None
    token_endpoint_auth_method: str
    redirect_uris: tuple[str, ...]

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"

    def auth(self) -> dict[str, Any]:
        """httpx2 keyword arguments that authenticate this client at the token endpoint."""
        if self.token_endpoint_auth_method == "client_secret_basic":
            return {"auth": (self.client_id, self.client_secret or "")}
        if self.token_endpoint_auth_method == "client_secret_post":
            return {"data": {"client_id": self.client_id, "client_secret": self.client_secret}}
        return {"data": {"client_id": self.client_id}}


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str
    method: str = "S256"

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode()).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


class AuthorizationFailedError(RuntimeError):
    """The provider did not redirect back to the client (the message says where it stopped)."""


@dataclass
class OidcProvider:
    """A running provider: issuer, clients, and small helpers for driving it from tests."""

    process: ChildProcess
    issuer: str
    confidential: OAuthClient
    public: OAuthClient
    scopes: tuple[str, ...]
    resource: str
    auto_approve: bool
    default_account: str
    access_token_ttl: int
    refresh_token_ttl: int
    _http: httpx2.Client = field(default_factory=lambda: httpx2.Client(timeout=10.0), repr=False)

    @cached_property
    def metadata(self) -> dict[str, Any]:
        """The discovery document (authorization_endpoint, token_endpoint, revocation_endpoint,
        introspection_endpoint, ...)."""
        response = self._http.get(f"{self.issuer}/.well-known/openid-configuration")
        response.raise_for_status()
        return response.json()

    def authorization_url(
        self,
        client: OAuthClient,
        *,
        redirect_uri: str | None = None,
        scope: str | None = None,
        state: str | None = None,
        pkce: Pkce | None = None,
        login_hint: str | None = None,
        resource: str | None = None,
    ) -> str:
        """An authorization request URL like the gateway would build (for tests of the peer)."""
        query = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": redirect_uri or client.redirect_uris[0],
            "scope": scope or " ".join(self.scopes),
            "state": state or secrets.token_urlsafe(16),
        }
        if pkce is not None:
            query |= {"code_challenge": pkce.challenge, "code_challenge_method": pkce.method}
        if login_hint:
            query["login_hint"] = login_hint
        if resource:
            query["resource"] = resource
        return f"{self.metadata['authorization_endpoint']}?{urllib.parse.urlencode(query)}"

    def authorize(
        self, authorization_url: str, redirect_uri: str, *, account: str | None = None
    ) -> str:
        """Follow an authorization request through the auto-approved login and consent.

        Returns the URL the provider redirected the browser to (`redirect_uri?code=...&state=...`,
        or `?error=...`), without requesting it. `account` sets the user who logs in (sent as
        `login_hint`); the account "deny" makes the user refuse consent.
        """
        if not self.auto_approve:
            raise AuthorizationFailedError(
                "this provider shows login and consent pages (auto_approve=False): drive it "
                "with a browser, or start it with auto_approve=True"
            )
        url = _with_login_hint(authorization_url, account) if account else authorization_url
        # A fresh cookie jar per flow, as a fresh browser: interaction state lives in cookies.
        with httpx2.Client(timeout=10.0, follow_redirects=False) as browser:
            for _ in range(_MAX_REDIRECTS):
                response = browser.get(url)
                location = response.headers.get("location")
                if response.status_code not in (302, 303) or not location:
                    raise AuthorizationFailedError(
                        f"expected a redirect from {url}, got {response.status_code}: "
                        f"{response.text[:500]}"
                    )
                url = urllib.parse.urljoin(url, location)
                if url.startswith(redirect_uri):
                    return url
        raise AuthorizationFailedError(
            f"more than {_MAX_REDIRECTS} redirects from {authorization_url}"
        )

    def token(self, client: OAuthClient, **form: str) -> httpx2.Response:
        """POST to the token endpoint as `client` (grant parameters in `form`)."""
        auth = client.auth()
        data = {**auth.pop("data", {}), **form}
        return self._http.post(self.metadata["token_endpoint"], data=data, **auth)

    def exchange_code(
        self, client: OAuthClient, callback_url: str, *, code_verifier: str, redirect_uri: str
    ) -> httpx2.Response:
        code = urllib.parse.parse_qs(urllib.parse.urlsplit(callback_url).query)["code"][0]
        return self.token(
            client,
            grant_type="authorization_code",
            code=code,
            redirect_uri=redirect_uri,
            code_verifier=code_verifier,
        )

    def refresh(self, client: OAuthClient, refresh_token: str) -> httpx2.Response:
        return self.token(client, grant_type="refresh_token", refresh_token=refresh_token)

    def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 introspection, authenticated as the confidential client."""
        auth = self.confidential.auth()
        response = self._http.post(
            self.metadata["introspection_endpoint"],
            data={**auth.pop("data", {}), "token": token},
            **auth,
        )
        response.raise_for_status()
        return response.json()

    def revoke(self, client: OAuthClient, token: str) -> httpx2.Response:
        """RFC 7009 revocation; revoking a refresh token revokes its whole grant."""
        auth = client.auth()
        return self._http.post(
            self.metadata["revocation_endpoint"],
            data={**auth.pop("data", {}), "token": token},
            **auth,
        )

    def stop(self) -> None:
        self._http.close()
        self.process.stop()


def _with_login_hint(url: str, account: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "login_hint"]
    query.append(("login_hint", account))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def start_oidc_provider(
    *,
    redirect_uris: Sequence[str] = (DEFAULT_REDIRECT_URI,),
    auto_approve: bool = True,
    default_account: str = "alice",
    scopes: Sequence[str] = DEFAULT_SCOPES,
    resource: str = DEFAULT_RESOURCE,
    access_token_ttl: int = 3600,
    refresh_token_ttl: int = 14 * 24 * 3600,
    rotate_refresh_tokens: str = "public",
    confidential_auth_method: str = "client_secret_basic",
    timeout: float = 20.0,
) -> OidcProvider:
    """Start the provider on a free loopback port and return once it serves discovery.

    Two static clients share `redirect_uris` (exact match): a confidential one
    (`confidential_auth_method`: client_secret_basic or client_secret_post) and a public
    one (no secret). PKCE is required for both. Refresh tokens rotate for the public client,
    and for the confidential one too with `rotate_refresh_tokens="always"`.
    """
    if rotate_refresh_tokens not in ("public", "always"):
        raise ValueError("rotate_refresh_tokens must be 'public' or 'always'")
    ensure_node_modules()  # oidc-provider is resolved from tests/node_modules
    confidential = OAuthClient(
        client_id="gateway-confidential",
        client_secret=secrets.token_urlsafe(32),
        token_endpoint_auth_method=confidential_auth_method,
        redirect_uris=tuple(redirect_uris),
    )
    public = OAuthClient(
        client_id="gateway-public",
        client_secret=None,
        token_endpoint_auth_method="none",
        redirect_uris=tuple(redirect_uris),
    )

    def launch(port: int) -> ChildProcess:
        config = {
            "port": port,
            "clients": [
                {
                    "client_id": c.client_id,
                    "client_secret": c.client_secret,
                    "token_endpoint_auth_method": c.token_endpoint_auth_method,
                    "redirect_uris": list(c.redirect_uris),
                }
                for c in (confidential, public)
            ],
            "scopes": list(scopes),
            "resource": resource,
            "access_token_ttl": access_token_ttl,
            "refresh_token_ttl": refresh_token_ttl,
            "rotate_refresh_tokens": rotate_refresh_tokens,
            "auto_approve": auto_approve,
            "default_account": default_account,
        }
        child = ChildProcess(
            [node_executable(), str(PROVIDER_SCRIPT)],
            env={**os.environ, "OIDC_PEER_CONFIG": json.dumps(config)},
            name="oidc-provider",
        )
        child.wait_ready(line=r"oidc-provider ready at (\S+)", timeout=timeout)
        return child

    process, port = start_on_free_port(launch)
    return OidcProvider(
        process=process,
        issuer=f"http://127.0.0.1:{port}",
        confidential=confidential,
        public=public,
        scopes=tuple(scopes),
        resource=resource,
        auto_approve=auto_approve,
        default_account=default_account,
        access_token_ttl=access_token_ttl,
        refresh_token_ttl=refresh_token_ttl,
    )
