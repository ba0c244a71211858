"""The OAuth 2.x client side, protocol only (no database): discovery (RFC 8414 / OIDC),
authorization requests with PKCE S256 (RFC 7636) and resource indicators (RFC 8707), the token
endpoint (code exchange, refresh), revocation (RFC 7009) and introspection (RFC 7662).

Every request goes through `credentials.egress` (SSRF guard, no redirects, timeouts)."""

import base64
import hashlib
import secrets
import urllib.parse
from dataclasses import dataclass
from typing import Any

from credentials import egress
from credentials.errors import ProviderError

_DESCRIPTION_MAX = 200


@dataclass(frozen=True)
class Endpoints:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str
    introspection_endpoint: str


@dataclass(frozen=True)
class ClientAuth:
    client_id: str
    client_secret: str  # "" for a public client
    method: str  # client_secret_basic | client_secret_post | none

    def __repr__(self) -> str:  # never print the secret
        return f"ClientAuth(client_id={self.client_id!r}, method={self.method!r})"

    def apply(self, form: dict[str, str]) -> tuple[dict[str, str], Any]:
        """The form and httpx `auth` for a request authenticated as this client."""
        if self.method == "client_secret_basic":
            # RFC 6749 2.3.1: form-urlencode id and secret before Basic encoding.
            return form, (
                urllib.parse.quote(self.client_id, safe=""),
                urllib.parse.quote(self.client_secret, safe=""),
            )
        if self.method == "client_secret_post":
            return {**form, "client_id": self.client_id, "client_secret": self.client_secret}, None
        return {**form, "client_id": self.client_id}, None


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    token_type: str
    expires_in: int | None
    refresh_token: str
    scope: str | None

    def __repr__(self) -> str:
        return f"TokenSet(token_type={self.token_type!r}, expires_in={self.expires_in!r})"


def new_pkce() -> tuple[str, str]:
    """(verifier, S256 challenge)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def _well_known_urls(issuer: str) -> list[str]:
    parts = urllib.parse.urlsplit(issuer.rstrip("/"))
    path = parts.path
    base = f"{parts.scheme}://{parts.netloc}"
    # RFC 8414 3.1 inserts the well-known segment before the issuer's path; OIDC appends it.
    urls = [f"{base}/.well-known/oauth-authorization-server{path}"]
    urls.append(f"{base}{path}/.well-known/openid-configuration")
    if path:
        urls.append(f"{base}/.well-known/openid-configuration{path}")
    return urls


def discover(issuer: str) -> dict[str, Any]:
    """Fetch and validate the authorization server metadata of `issuer`."""
    egress.check_url(issuer, field="issuer")
    last_error = ""
    for url in _well_known_urls(issuer):
        response = egress.request("GET", url)
        if response.status_code == 404:
            last_error = "no metadata document was found"
            continue
        if response.status_code != 200:
            last_error = f"the metadata request answered HTTP {response.status_code}"
            continue
        try:
            metadata = response.json()
        except ValueError:
            last_error = "the metadata document is not JSON"
            continue
        if not isinstance(metadata, dict):
            last_error = "the metadata document is not a JSON object"
            continue
        # RFC 8414 3.3: the issuer in the document must be the one we asked for (mix-up defence).
        if str(metadata.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
            raise ProviderError(
                "The provider's metadata names a different issuer; check the issuer URL."
            )
        return metadata
    raise ProviderError(f"Discovery at {issuer} failed: {last_error}.")


def authorization_url(
    *,
    endpoints: Endpoints,
    client_id: str,
    redirect_uri: str,
    scope: str,
    state: str,
    code_challenge: str,
    resource: str = "",
) -> str:
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
    }
    if scope:
        query["scope"] = scope
    if resource:
        query["resource"] = resource
    separator = "&" if urllib.parse.urlsplit(endpoints.authorization_endpoint).query else "?"
    return f"{endpoints.authorization_endpoint}{separator}{urllib.parse.urlencode(query)}"


def _error_from(response: Any, what: str) -> ProviderError:
    status = response.status_code
    transient = status >= 500 or status == 429
    error, description = "", ""
    try:
        body = response.json()
        if isinstance(body, dict):
            error = str(body.get("error", ""))[:64]
            description = str(body.get("error_description", ""))[:_DESCRIPTION_MAX]
    except ValueError:
        pass
    detail = error or f"HTTP {status}"
    if description:
        detail += f": {description}"
    return ProviderError(
        f"The provider refused the {what} ({detail}).",
        error=error,
        status=status,
        transient=transient,
    )


def token_request(*, endpoints: Endpoints, client: ClientAuth, form: dict[str, str]) -> TokenSet:
    data, auth = client.apply(form)
    response = egress.request("POST", endpoints.token_endpoint, data=data, auth=auth)
    what = "token refresh" if form.get("grant_type") == "refresh_token" else "code exchange"
    if response.status_code != 200:
        raise _error_from(response, what)
    try:
        body = response.json()
    except ValueError:
        raise ProviderError(f"The provider's {what} answer is not JSON.") from None
    access_token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(access_token, str) or not access_token:
        raise ProviderError(f"The provider's {what} answer has no access token.")
    expires_in = body.get("expires_in")
    try:
        expires_in = int(expires_in) if expires_in is not None else None
    except (TypeError, ValueError):
        expires_in = None
    refresh_token = body.get("refresh_token") or ""
    scope = body.get("scope")
    return TokenSet(
        access_token=access_token,
        token_type=str(body.get("token_type") or "Bearer")[:40],
        expires_in=expires_in,
        refresh_token=refresh_token if isinstance(refresh_token, str) else "",
        scope=scope if isinstance(scope, str) else None,
    )


def exchange_code(
    *,
    endpoints: Endpoints,
    client: ClientAuth,
    code: str,
    redirect_uri: str,
    code_verifier: str,
    resource: str = "",
) -> TokenSet:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
    }
    if resource:
        form["resource"] = resource
    return token_request(endpoints=endpoints, client=client, form=form)


def refresh(
    *, endpoints: Endpoints, client: ClientAuth, refresh_token: str, resource: str = ""
) -> TokenSet:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if resource:
        form["resource"] = resource
    return token_request(endpoints=endpoints, client=client, form=form)


def revoke(*, endpoints: Endpoints, client: ClientAuth, token: str, token_type_hint: str) -> None:
    """RFC 7009. 200 means revoked (or already invalid); anything else raises ProviderError."""
    data, auth = client.apply({"token": token, "token_type_hint": token_type_hint})
    response = egress.request("POST", endpoints.revocation_endpoint, data=data, auth=auth)
    if response.status_code != 200:
        raise _error_from(response, "revocation")


def introspect(*, endpoints: Endpoints, client: ClientAuth, token: str) -> dict[str, Any]:
    data, auth = client.apply({"token": token})
    response = egress.request("POST", endpoints.introspection_endpoint, data=data, auth=auth)
    if response.status_code != 200:
        raise _error_from(response, "introspection")
    body = response.json()
    return body if isinstance(body, dict) else {}
