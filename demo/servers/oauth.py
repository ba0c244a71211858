"""A small OAuth 2.1 authorization server for the trial: the demo chat's "Slack sign-in".

THIS IS A DEMO. There are no passwords: the consent page offers the demo people as one-click
accounts. Everything lives in memory and is gone on restart (connected users must connect
again). It exists so the trial shows a member's own grant reaching an upstream without Node or
a real identity provider; the gateway's own tests use the real npm `oidc-provider` instead.

What it does implement, as a real server would:
- RFC 8414 metadata at `/.well-known/oauth-authorization-server/oauth` (the issuer is
  `<base>/oauth`), RFC 9207 `iss` on every authorization response;
- authorization code grant with PKCE S256 required, exact redirect URI match, single-use codes
  (60 s), `state` returned as given, RFC 8707 `resource` recorded as the token's audience;
- short-lived opaque access tokens and rotating refresh tokens (each refresh returns a new
  refresh token; presenting a used one revokes the whole grant);
- RFC 7009 revocation (a refresh token revokes its grant) and RFC 7662 introspection.

`python -m demo.servers` mounts it beside the MCP servers; the demo chat server accepts only
requests with an access token this server issued (`AuthStore.active_token`).
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

PREFIX = "/oauth"
METADATA_PATH = "/.well-known/oauth-authorization-server" + PREFIX
DEFAULT_CLIENT_ID = "gateway-demo"
DEFAULT_REDIRECT_URI = "http://127.0.0.1:8000/oauth/callback"
SCOPES = ("chat:read", "chat:write")
# (account, display name): the demo organization's people (demo/seed/tenants.py, audit.py).
DEMO_ACCOUNTS = (
    ("maria@demo.test", "Maria Member"),
    ("admin@demo.test", "Ada Admin"),
)
CODE_TTL = 60
INTERACTION_TTL = 600


@dataclass
class Grant:
    """One user's consent to one client: the tokens issued under it die with it."""

    id: str
    client_id: str
    account: str
    scope: str
    resource: str
    revoked: bool = False


@dataclass
class TokenRecord:
    grant: Grant
    kind: str  # "access_token" | "refresh_token"
    issued_at: float
    expires_at: float | None
    used: bool = False  # refresh tokens are single use (rotation)


@dataclass
class AuthStore:
    """All state, in memory. One event loop serves every request, so no locking is needed."""

    redirect_uris: tuple[str, ...] = (DEFAULT_REDIRECT_URI,)
    client_id: str = DEFAULT_CLIENT_ID
    access_token_ttl: int = 900
    refresh_token_ttl: int = 14 * 24 * 3600
    tokens: dict[str, TokenRecord] = field(default_factory=dict)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    interactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    issued: int = 0  # access tokens issued so far (for tests and /healthz)

    # --- tokens -----------------------------------------------------------------------------

    def _new(self, grant: Grant, kind: str, ttl: int) -> str:
        token = ("demo_at_" if kind == "access_token" else "demo_rt_") + secrets.token_urlsafe(32)
        now = time.time()
        self.tokens[token] = TokenRecord(grant, kind, now, now + ttl if ttl else None)
        if kind == "access_token":
            self.issued += 1
        return token

    def issue(self, grant: Grant) -> dict[str, Any]:
        self._expire()
        return {
            "access_token": self._new(grant, "access_token", self.access_token_ttl),
            "token_type": "Bearer",
            "expires_in": self.access_token_ttl,
            "refresh_token": self._new(grant, "refresh_token", self.refresh_token_ttl),
            "scope": grant.scope,
        }

    def lookup(self, token: str) -> TokenRecord | None:
        record = self.tokens.get(token)
        if record is None or record.grant.revoked:
            return None
        if record.expires_at is not None and record.expires_at <= time.time():
            return None
        return record

    def active_token(self, token: str) -> TokenRecord | None:
        """The live access token record, or None (unknown, expired, revoked, or a refresh token)."""
        record = self.lookup(token)
        return record if record is not None and record.kind == "access_token" else None

    def account_for(self, authorization: str | None) -> str | None:
        """The account behind an `Authorization: Bearer <access token>` header, or None."""
        scheme, _, token = (authorization or "").partition(" ")
        record = self.active_token(token.strip()) if scheme.lower() == "bearer" else None
        return record.grant.account if record is not None else None

    def revoke(self, token: str) -> None:
        record = self.tokens.get(token)
        if record is None:
            return
        if record.kind == "refresh_token":
            record.grant.revoked = True  # RFC 7009 2.1: the whole grant
        else:
            del self.tokens[token]

    def _expire(self) -> None:
        now = time.time()
        for token in [
            t
            for t, r in self.tokens.items()
            if r.grant.revoked or (r.expires_at is not None and r.expires_at <= now)
        ]:
            del self.tokens[token]
        for store in (self.codes, self.interactions):
            for key in [k for k, v in store.items() if v["expires_at"] <= now]:
                del store[key]


# --- helpers ---------------------------------------------------------------------------------


def issuer_for(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}{PREFIX}"


def metadata(issuer: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "revocation_endpoint": f"{issuer}/revoke",
        "introspection_endpoint": f"{issuer}/introspect",
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "introspection_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": list(SCOPES),
        "authorization_response_iss_parameter_supported": True,
        "service_documentation": "demo/servers/oauth.py (a demo: no passwords, memory only)",
    }


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


def _redirect(redirect_uri: str, params: dict[str, str]) -> RedirectResponse:
    separator = "&" if urllib.parse.urlsplit(redirect_uri).query else "?"
    return RedirectResponse(f"{redirect_uri}{separator}{urllib.parse.urlencode(params)}", 303)


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem}}
.demo{{background:#fff3cd;border:1px solid #e0c060;padding:.6rem .8rem;border-radius:6px}}
button{{font-size:1rem;padding:.5rem 1rem;margin:.25rem 0;cursor:pointer}}</style></head>
<body><p class="demo"><strong>Demo OAuth server.</strong> This is a stand-in for a real
sign-in (Slack, Jira...): there are no passwords, and anything it issues lives in memory
until the demo servers restart. Never use it for anything real.</p>{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        _PAGE.format(title=html.escape(title), body=body),
        status_code=status,
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
    )


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: str(v) for k, v in form.items()}


def _client_ok(store: AuthStore, form: dict[str, str], request: Request) -> bool:
    """Public client (token_endpoint_auth_method none): the client_id must be ours; a secret
    sent anyway (Basic or form) is refused."""
    if request.headers.get("authorization") or form.get("client_secret"):
        return False
    return form.get("client_id") == store.client_id


# --- endpoints -------------------------------------------------------------------------------


def build_routes(store: AuthStore) -> list[BaseRoute]:
    async def well_known(request: Request) -> JSONResponse:
        return JSONResponse(metadata(issuer_for(request)))

    async def authorize(request: Request) -> Response:
        issuer = issuer_for(request)
        if request.method == "POST":
            return await _consent(request, issuer)
        q = dict(request.query_params)
        # Until client and redirect URI are known good, errors are shown, never redirected.
        if q.get("client_id") != store.client_id:
            return _page("Unknown client", "<h1>Unknown client</h1>", 400)
        redirect_uri = q.get("redirect_uri", "")
        if redirect_uri not in store.redirect_uris:
            return _page(
                "Redirect URI not registered",
                "<h1>This redirect URI is not registered</h1><p>Registered: "
                + html.escape(", ".join(store.redirect_uris))
                + "</p>",
                400,
            )
        state = q.get("state", "")

        def fail(error: str, description: str) -> RedirectResponse:
            params = {"error": error, "error_description": description, "iss": issuer}
            if state:
                params["state"] = state
            return _redirect(redirect_uri, params)

        if q.get("response_type") != "code":
            return fail("unsupported_response_type", "only response_type=code")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return fail("invalid_request", "PKCE with code_challenge_method=S256 is required")
        requested = q.get("scope", " ".join(SCOPES)).split()
        unknown = [s for s in requested if s not in SCOPES]
        if unknown:
            return fail("invalid_scope", f"unknown scope(s): {' '.join(unknown)}")
        store._expire()
        interaction = secrets.token_urlsafe(24)
        store.interactions[interaction] = {
            "redirect_uri": redirect_uri,
            "state": state,
            "scope": " ".join(requested),
            "resource": q.get("resource", ""),
            "code_challenge": q["code_challenge"],
            "expires_at": time.time() + INTERACTION_TTL,
        }
        buttons = "".join(
            f'<button name="account" value="{html.escape(account)}">Continue as '
            f"{html.escape(name)} ({html.escape(account)})</button><br>"
            for account, name in DEMO_ACCOUNTS
        )
        body = (
            f"<h1>Allow {html.escape(store.client_id)}?</h1>"
            f"<p>The MCP governance gateway asks to act in the demo chat for you with the scopes "
            f"<code>{html.escape(' '.join(requested))}</code>.</p>"
            f'<form method="post" action="{PREFIX}/authorize">'
            f'<input type="hidden" name="interaction" value="{interaction}">'
            f'{buttons}<button name="decision" value="deny">Deny</button></form>'
        )
        return _page("Demo sign-in", body)

    async def _consent(request: Request, issuer: str) -> Response:
        form = await _form(request)
        pending = store.interactions.pop(form.get("interaction", ""), None)
        if pending is None or pending["expires_at"] <= time.time():
            return _page(
                "Expired", "<h1>This sign-in expired or was already used.</h1>Start again.", 400
            )
        params = {"iss": issuer}
        if pending["state"]:
            params["state"] = pending["state"]
        account = form.get("account", "")
        if form.get("decision") == "deny" or account not in dict(DEMO_ACCOUNTS):
            return _redirect(
                pending["redirect_uri"],
                {**params, "error": "access_denied", "error_description": "consent declined"},
            )
        code = secrets.token_urlsafe(32)
        store.codes[code] = {**pending, "account": account, "expires_at": time.time() + CODE_TTL}
        return _redirect(pending["redirect_uri"], {**params, "code": code})

    async def token(request: Request) -> JSONResponse:
        form = await _form(request)
        if not _client_ok(store, form, request):
            return _oauth_error("invalid_client", "unknown client or unexpected secret", 401)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            pending = store.codes.pop(form.get("code", ""), None)
            if pending is None or pending["expires_at"] <= time.time():
                return _oauth_error("invalid_grant", "unknown, used or expired code")
            if form.get("redirect_uri") != pending["redirect_uri"]:
                return _oauth_error("invalid_grant", "redirect_uri does not match")
            verifier = form.get("code_verifier", "")
            if not verifier or _s256(verifier) != pending["code_challenge"]:
                return _oauth_error("invalid_grant", "PKCE verification failed")
            grant = Grant(
                id=secrets.token_hex(8),
                client_id=store.client_id,
                account=pending["account"],
                scope=pending["scope"],
                resource=pending["resource"],
            )
            return JSONResponse(store.issue(grant), headers={"Cache-Control": "no-store"})
        if grant_type == "refresh_token":
            presented = form.get("refresh_token", "")
            record = store.tokens.get(presented)
            if record is not None and record.kind == "refresh_token" and record.used:
                # A rotated-away refresh token came back: it may be stolen. End the grant.
                record.grant.revoked = True
            live = store.lookup(presented)
            if live is None or live.kind != "refresh_token" or live.used:
                return _oauth_error("invalid_grant", "unknown, used, expired or revoked token")
            # Rotation: the presented token is spent (kept, marked used, to detect its reuse).
            live.used = True
            return JSONResponse(store.issue(live.grant), headers={"Cache-Control": "no-store"})
        return _oauth_error("unsupported_grant_type", "authorization_code or refresh_token")

    async def revoke(request: Request) -> Response:
        form = await _form(request)
        if not _client_ok(store, form, request):
            return _oauth_error("invalid_client", "unknown client or unexpected secret", 401)
        store.revoke(form.get("token", ""))
        return Response(status_code=200)

    async def introspect(request: Request) -> JSONResponse:
        form = await _form(request)
        if not _client_ok(store, form, request):
            return _oauth_error("invalid_client", "unknown client or unexpected secret", 401)
        record = store.lookup(form.get("token", ""))
        if record is None or record.used:
            return JSONResponse({"active": False})
        answer: dict[str, Any] = {
            "active": True,
            "token_type": "Bearer" if record.kind == "access_token" else "refresh_token",
            "client_id": record.grant.client_id,
            "sub": record.grant.account,
            "username": record.grant.account,
            "scope": record.grant.scope,
            "iat": int(record.issued_at),
            "iss": issuer_for(request),
        }
        if record.expires_at is not None:
            answer["exp"] = int(record.expires_at)
        if record.grant.resource:
            answer["aud"] = record.grant.resource
        return JSONResponse(answer)

    return [
        Route(METADATA_PATH, well_known, methods=["GET"]),
        Route(f"{PREFIX}/authorize", authorize, methods=["GET", "POST"]),
        Route(f"{PREFIX}/token", token, methods=["POST"]),
        Route(f"{PREFIX}/revoke", revoke, methods=["POST"]),
        Route(f"{PREFIX}/introspect", introspect, methods=["POST"]),
    ]


def default_redirect_uris(site_url: str | None, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The gateway's callback (`{SITE_URL}/oauth/callback`) plus any extra ones, deduplicated."""
    base = (site_url or "").rstrip("/")
    uris = [f"{base}/oauth/callback" if base else DEFAULT_REDIRECT_URI, *extra]
    return tuple(dict.fromkeys(uris))


class RequireBearer:
    """ASGI wrapper: only requests carrying a live access token of `store` reach `app`;
    others get 401 with a Bearer challenge (RFC 6750). How the demo chat is protected."""

    def __init__(self, app: Any, store: AuthStore, realm: str) -> None:
        self.app, self.store, self.realm = app, store, realm

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        value = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and self.store.active_token(token.strip()) is not None:
            await self.app(scope, receive, send)
            return
        error = "invalid_token" if value else "invalid_request"
        description = (
            "the access token is unknown, expired or revoked"
            if value
            else "this server needs a Bearer token from the demo OAuth server"
        )
        response = JSONResponse(
            {"error": error, "error_description": description},
            status_code=401,
            headers={
                "WWW-Authenticate": f'Bearer realm="{self.realm}", error="{error}", '
                f'error_description="{description}"'
            },
        )
        await response(scope, receive, send)
