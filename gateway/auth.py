"""Inbound authentication for /mcp: who is calling, from the `Authorization: Bearer` header.

Pluggable: an `Authenticator` turns a bearer token into a `GatewayPrincipal` or refuses it with
an `AuthFailure`, which the ASGI layer answers with 401 and an RFC 6750 challenge. The agent-key
authenticator ships now; an OAuth 2.1 access-token authenticator (audience = this resource) can
be added to `authenticators()` later without touching the pipeline.

Agent keys are looked up in the database (prefix + constant-time hash, see
tenants.authentication) and the result is cached in this process for
`GATEWAY_KEY_CACHE_SECONDS` (default 5 s), keyed by the key's SHA-256: a revoked or expired key,
or a disabled agent, stops working within that bound on every replica.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from django.utils import timezone

from gateway.conf import gateway_settings
from gateway.db import SingleFlight, run_db
from policies.types import Principal

REALM = "mcp-gateway"
_MAX_CACHED_KEYS = 10_000


@dataclass(frozen=True, slots=True)
class GatewayPrincipal:
    """The authenticated caller of one request: an agent of an organization, optionally acting
    for a user. `agent` and `acting_for` are the model rows (read-only here) for the audit trail
    and the credential lookup."""

    org_id: int
    org_slug: str
    agent_id: int
    agent_slug: str
    key_id: int | None
    policy_principal: Principal
    acting_for_id: int | None = None
    acting_for_email: str | None = None
    expires_at: datetime | None = None
    organization: Any = field(default=None, compare=False, repr=False)
    agent: Any = field(default=None, compare=False, repr=False)
    acting_for: Any = field(default=None, compare=False, repr=False)


class AuthFailure(Exception):
    """Refused: answered 401 with `WWW-Authenticate: Bearer realm=..., error=..., ...`.

    `error` is the RFC 6750 code (`invalid_token`, `invalid_request`), or "" when the request
    carried no credentials at all (the RFC says no error code then)."""

    def __init__(self, description: str, *, error: str = "invalid_token") -> None:
        super().__init__(description)
        self.description = description
        self.error = error

    def challenge(self) -> str:
        parts = [f'realm="{REALM}"']
        if self.error:
            parts.append(f'error="{self.error}"')
            parts.append(f'error_description="{self.description}"')
        return "Bearer " + ", ".join(parts)


class Authenticator(Protocol):
    def handles(self, token: str) -> bool:
        """True when this authenticator recognizes the token's format."""

    async def authenticate(self, token: str, *, org_slug: str) -> GatewayPrincipal:
        """The principal for this token in organization `org_slug`, or raise AuthFailure."""


def principal_from_key(key: Any) -> GatewayPrincipal:
    """A GatewayPrincipal from an AgentKey with agent, organization, acting_for, team loaded."""
    from policies.selectors import principal_for_agent

    agent = key.agent
    user = agent.acting_for
    return GatewayPrincipal(
        org_id=key.organization_id,
        org_slug=key.organization.slug,
        agent_id=agent.pk,
        agent_slug=agent.slug,
        key_id=key.pk,
        policy_principal=principal_for_agent(agent),
        acting_for_id=user.pk if user else None,
        acting_for_email=user.email if user else None,
        expires_at=key.expires_at,
        organization=key.organization,
        agent=agent,
        acting_for=user,
    )


class AgentKeyAuthenticator:
    """`Authorization: Bearer <agent key>` (the `agk_...` keys issued in the web UI)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, GatewayPrincipal | None]] = {}
        # Requests with the same key arriving while it is looked up share the lookup.
        self._lookups = SingleFlight()
        self._generation = 0

    _prefix = ""

    def handles(self, token: str) -> bool:
        if not self._prefix:
            from tenants import secrets

            self._prefix = f"{secrets.AGENT_KEY_KIND}_"
        return token.startswith(self._prefix)

    def forget_all(self) -> None:
        self._generation += 1
        self._lookups.forget()
        self._cache.clear()

    async def _lookup(self, token: str, digest: str) -> GatewayPrincipal | None:
        now = time.monotonic()  # before the read: the entry never outlives the bound
        generation = self._generation
        principal = await run_db(_lookup_key, token)
        if generation == self._generation:  # not forgotten meanwhile
            if len(self._cache) >= _MAX_CACHED_KEYS:
                self._cache.clear()  # a cache, not a store
            self._cache[digest] = (now, principal)
        return principal

    async def authenticate(self, token: str, *, org_slug: str) -> GatewayPrincipal:
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < gateway_settings().key_cache_seconds:
            principal = cached[1]
        else:
            principal = await self._lookups.run(digest, lambda: self._lookup(token, digest))
        if principal is None:
            raise AuthFailure(
                "The agent key is unknown, expired or revoked, or its agent is disabled."
            )
        if principal.expires_at is not None and principal.expires_at <= timezone.now():
            self._cache.pop(digest, None)
            raise AuthFailure("The agent key has expired.")
        if principal.org_slug != org_slug:
            # Same answer as an unknown key: a key must not reveal which organization it is of.
            raise AuthFailure("The agent key is not valid for this organization's endpoint.")
        return principal


def _lookup_key(token: str) -> GatewayPrincipal | None:
    from tenants.authentication import agent_key_authenticate

    key = agent_key_authenticate(token)
    return principal_from_key(key) if key is not None else None


_AUTHENTICATORS: list[Authenticator] = [AgentKeyAuthenticator()]


def authenticators() -> list[Authenticator]:
    return _AUTHENTICATORS


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header, or AuthFailure."""
    if not authorization:
        raise AuthFailure("Send your agent key as 'Authorization: Bearer <key>'.", error="")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token or len(token) > 512:
        raise AuthFailure(
            "The Authorization header must be 'Bearer <key>'.", error="invalid_request"
        )
    return token


async def authenticate(authorization: str | None, *, org_slug: str) -> GatewayPrincipal:
    token = bearer_token(authorization)
    for authenticator in authenticators():
        if authenticator.handles(token):
            return await authenticator.authenticate(token, org_slug=org_slug)
    raise AuthFailure("The bearer token is not an agent key this gateway knows.")
