"""Writes of the credentials app: providers, the consent flow, refresh, revocation, and the
gateway's hook `access_token_for`.

Rules that hold throughout:
- Tokens and client secrets exist in clear only in local variables: stored as vault blobs, never
  logged, never in audit details or exception messages.
- A refresh (worker or inline) runs under the connection's row lock and stores a rotated refresh
  token in the same transaction, so a rotating refresh token is never used twice.
- Transient provider failures (network, 5xx, 429) back off and retry; they never delete.
- Disconnect and offboarding first mark the connection `revoked` (no one uses it any more), then
  revoke at the provider (RFC 7009), then delete, auditing each step.
"""

import hashlib
import logging
import secrets
import urllib.parse
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.db import IntegrityError, router, transaction
from django.db.models import ProtectedError, Q, RestrictedError
from django.db.models.deletion import Collector
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

import audit
from credentials import oauth, vault
from credentials.egress import check_url
from credentials.errors import (
    ConsentFlowError,
    ConsentRequired,
    CredentialError,
    ProviderError,
    UnsafeURLError,
    VaultError,
)
from credentials.models import (
    Connection,
    ConnectionStatus,
    OAuthProvider,
    PendingAuthorization,
    TokenAuthMethod,
)
from tenants.models import Membership
from tenants.permissions import Perm, role_has
from tenants.services import require_perm

logger = logging.getLogger(__name__)

CLIENT_SECRET_PURPOSE = "credentials.oauthprovider.client_secret"
ACCESS_PURPOSE = "credentials.connection.access_token"
REFRESH_PURPOSE = "credentials.connection.refresh_token"
VERIFIER_PURPOSE = "credentials.pendingauthorization.code_verifier"

SESSION_BINDING_KEY = "credentials.oauth_binding"
# An access token this close to expiry is treated as expired (clock skew, request time).
EXPIRY_SKEW = timedelta(seconds=30)
MAX_BACKOFF = timedelta(hours=1)
# After this many failed revocation attempts the tokens are deleted locally anyway (audited as a
# failure): keeping a departed user's tokens forever is worse than a grant the provider expires.
MAX_REVOKE_ATTEMPTS = 8

_URL_FIELDS = (
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "revocation_endpoint",
    "introspection_endpoint",
)


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _backoff(failures: int) -> timedelta:
    return min(timedelta(seconds=30 * 2 ** max(failures - 1, 0)), MAX_BACKOFF)


def _audit(**kwargs: Any) -> None:
    audit.record(**kwargs)


def _audit_now(**kwargs: Any) -> None:
    """Record an audit event that must survive the error raised right after it."""
    with transaction.atomic():
        audit.record(**kwargs)


# --- Provider plumbing -----------------------------------------------------------------------


def provider_endpoints(provider: OAuthProvider) -> oauth.Endpoints:
    return oauth.Endpoints(
        issuer=provider.issuer,
        authorization_endpoint=provider.authorization_endpoint,
        token_endpoint=provider.token_endpoint,
        revocation_endpoint=provider.revocation_endpoint,
        introspection_endpoint=provider.introspection_endpoint,
    )


def provider_client(provider: OAuthProvider) -> oauth.ClientAuth:
    secret = ""
    if provider.client_secret_blob:
        secret = vault.decrypt(
            org=provider.organization_id,
            purpose=CLIENT_SECRET_PURPOSE,
            row_uid=provider.uid,
            blob=provider.client_secret_blob,
        )
    return oauth.ClientAuth(
        client_id=provider.client_id,
        client_secret=secret,
        method=provider.token_endpoint_auth_method,
    )


def redirect_uri() -> str:
    """The one callback URL to register at every provider (exact match)."""
    return f"{settings.SITE_URL}{reverse('credentials:oauth_callback')}"


def consent_url_for(provider: OAuthProvider) -> str:
    """Where a user goes to (re)connect their account for `provider` (absolute URL)."""
    org_slug = provider.organization.slug
    path = reverse(
        "credentials:connect",
        kwargs={"org_slug": org_slug, "oauthprovider_id": provider.pk},
    )
    return f"{settings.SITE_URL}{path}"


def _clean_provider_fields(data: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    out = dict(data)
    for key in ("name", "slug", "client_id", "scopes", "resource", *_URL_FIELDS):
        if key in out and out[key] is not None:
            out[key] = str(out[key]).strip()
    if "scopes" in out:
        out["scopes"] = " ".join(out["scopes"].split())
    if creating:
        if not out.get("name"):
            raise CredentialError("Give the provider a name.", field="name")
        out["slug"] = slugify(out.get("slug") or out["name"])[:50]
        if not out["slug"]:
            raise CredentialError("The slug needs letters or digits.", field="slug")
    if "client_id" in out and not out["client_id"]:
        raise CredentialError("Enter the client id the provider issued.", field="client_id")
    method = out.get("token_endpoint_auth_method")
    if method is not None and method not in TokenAuthMethod.values:
        raise CredentialError(
            "Choose client_secret_basic, client_secret_post or none.",
            field="token_endpoint_auth_method",
        )
    for key in _URL_FIELDS:
        if out.get(key):
            check_url(out[key], field=key)
    if out.get("resource"):
        parts = urllib.parse.urlsplit(out["resource"])
        if not parts.scheme or parts.fragment:
            raise CredentialError(
                "A resource indicator is an absolute URI without a fragment (RFC 8707).",
                field="resource",
            )
    return out


def _apply_discovery(provider: OAuthProvider, explicit: set[str]) -> None:
    """Fill endpoints the admin did not enter from the issuer's metadata (network call)."""
    if not provider.issuer:
        return
    try:
        metadata = oauth.discover(provider.issuer)
    except (ProviderError, UnsafeURLError) as exc:
        raise CredentialError(exc.message, field="issuer") from exc
    for key in _URL_FIELDS[1:]:
        if key in explicit and getattr(provider, key):
            continue
        value = metadata.get(key)
        if isinstance(value, str) and value:
            check_url(value, field=key)
            setattr(provider, key, value[:500])
    if provider.pkce_required:
        methods = metadata.get("code_challenge_methods_supported") or []
        if "S256" not in methods:
            raise CredentialError(
                "The provider does not advertise PKCE S256 (code_challenge_methods_supported); "
                "untick 'PKCE required' only if you know it supports PKCE anyway.",
                field="pkce_required",
            )
    provider.metadata = {
        k: metadata[k]
        for k in (
            "issuer",
            "scopes_supported",
            "code_challenge_methods_supported",
            "authorization_response_iss_parameter_supported",
            "token_endpoint_auth_methods_supported",
        )
        if k in metadata
    }
    provider.discovered_at = timezone.now()


def _check_complete(provider: OAuthProvider) -> None:
    if not provider.authorization_endpoint:
        raise CredentialError(
            "Enter the authorization endpoint, or an issuer whose metadata names it.",
            field="authorization_endpoint",
        )
    if not provider.token_endpoint:
        raise CredentialError(
            "Enter the token endpoint, or an issuer whose metadata names it.",
            field="token_endpoint",
        )


def provider_create(
    *, org: Any, actor: Any, client_secret: str = "", **fields: Any
) -> OAuthProvider:
    """Register an OAuth provider (admins). Discovery runs first (outside the transaction); the
    client secret is stored encrypted; the change is audited."""
    require_perm(org=org, actor=actor, perm=Perm.MANAGE_PROVIDERS)
    allowed = {
        "name",
        "slug",
        "client_id",
        "token_endpoint_auth_method",
        "scopes",
        "pkce_required",
        "resource",
        *_URL_FIELDS,
    }
    unknown = set(fields) - allowed
    if unknown:
        raise CredentialError(f"Unknown provider field(s): {', '.join(sorted(unknown))}.")
    data = _clean_provider_fields(fields, creating=True)
    data.setdefault("token_endpoint_auth_method", TokenAuthMethod.CLIENT_SECRET_BASIC)
    if not data.get("client_id"):
        raise CredentialError("Enter the client id the provider issued.", field="client_id")
    _check_secret(data["token_endpoint_auth_method"], client_secret, has_existing=False)
    if OAuthProvider.objects.for_org(org).filter(slug=data["slug"]).exists():
        raise CredentialError(f"A provider with the slug '{data['slug']}' exists.", field="slug")
    provider = OAuthProvider(organization=org, created_by=actor, **data)
    _apply_discovery(provider, explicit={k for k in _URL_FIELDS if data.get(k)})
    _check_complete(provider)
    if not provider.issuer and not (provider.authorization_endpoint and provider.token_endpoint):
        raise CredentialError("Enter an issuer or the endpoints.", field="issuer")
    try:
        with transaction.atomic():
            if client_secret:
                provider.client_secret_blob = vault.encrypt(
                    org=org,
                    purpose=CLIENT_SECRET_PURPOSE,
                    row_uid=provider.uid,
                    plaintext=client_secret,
                )
            provider.save()
            _audit(
                org=org,
                action="oauth_provider.created",
                actor=actor,
                target=provider,
                details=_provider_details(provider),
            )
    except IntegrityError as exc:
        raise CredentialError(
            f"A provider with the slug '{provider.slug}' exists.", field="slug"
        ) from exc
    return provider


def _check_secret(method: str, secret: str, *, has_existing: bool) -> None:
    if method == TokenAuthMethod.NONE and secret:
        raise CredentialError(
            "A public client (auth method 'none') has no client secret: leave it empty.",
            field="client_secret",
        )
    if method != TokenAuthMethod.NONE and not secret and not has_existing:
        raise CredentialError(
            "Enter the client secret (or choose the public client auth method 'none').",
            field="client_secret",
        )


def _provider_details(provider: OAuthProvider) -> dict[str, Any]:
    return {
        "slug": provider.slug,
        "issuer": provider.issuer,
        "client_id": provider.client_id,
        "auth_method": provider.token_endpoint_auth_method,
        "scopes": provider.scopes,
        "resource": provider.resource,
        "confidential_client": bool(provider.client_secret_blob),
    }


def provider_update(
    *, provider: OAuthProvider, actor: Any, client_secret: str = "", **fields: Any
) -> OAuthProvider:
    """Change a provider. An empty `client_secret` keeps the stored one. Re-runs discovery when
    the issuer changes."""
    org = provider.organization
    require_perm(org=org, actor=actor, perm=Perm.MANAGE_PROVIDERS)
    allowed = {
        "name",
        "client_id",
        "token_endpoint_auth_method",
        "scopes",
        "pkce_required",
        "resource",
        *_URL_FIELDS,
    }
    unknown = set(fields) - allowed
    if unknown:
        raise CredentialError(f"Unknown or read-only field(s): {', '.join(sorted(unknown))}.")
    data = _clean_provider_fields(fields, creating=False)
    if "name" in data and not data["name"]:
        raise CredentialError("Give the provider a name.", field="name")
    method = data.get("token_endpoint_auth_method", provider.token_endpoint_auth_method)
    has_existing = bool(provider.client_secret_blob) and method != TokenAuthMethod.NONE
    _check_secret(method, client_secret, has_existing=has_existing)
    changed = sorted(k for k, v in data.items() if getattr(provider, k) != v)
    for key, value in data.items():
        setattr(provider, key, value)
    if "issuer" in changed or ("pkce_required" in changed and provider.pkce_required):
        _apply_discovery(provider, explicit={k for k in _URL_FIELDS if data.get(k)})
    _check_complete(provider)
    with transaction.atomic():
        if method == TokenAuthMethod.NONE:
            if provider.client_secret_blob:
                changed.append("client_secret")
            provider.client_secret_blob = ""
        elif client_secret:
            provider.client_secret_blob = vault.encrypt(
                org=org,
                purpose=CLIENT_SECRET_PURPOSE,
                row_uid=provider.uid,
                plaintext=client_secret,
            )
            changed.append("client_secret")
        provider.updated_at = timezone.now()
        provider.save()
        _audit(
            org=org,
            action="oauth_provider.updated",
            actor=actor,
            target=provider,
            details={**_provider_details(provider), "changed": changed},
        )
    return provider


def _users_of_provider(provider: OAuthProvider) -> list[str]:
    """What (other than its own connections and pending authorizations) still references
    `provider` and would block its deletion, e.g. a catalog server naming it (PROTECT), as
    human-readable labels. Found through Django's deletion collector, so this app never imports
    the apps above it."""
    collector = Collector(using=router.db_for_write(OAuthProvider, instance=provider))
    try:
        collector.collect([provider])
    except (ProtectedError, RestrictedError) as exc:
        blocked = (
            exc.protected_objects if isinstance(exc, ProtectedError) else exc.restricted_objects
        )
        labels = []
        for obj in blocked:
            if isinstance(obj, Connection | PendingAuthorization):
                continue  # ours: revoked and deleted by provider_delete itself
            kind = obj._meta.verbose_name
            name = getattr(obj, "name", "") or getattr(obj, "slug", "") or f"#{obj.pk}"
            labels.append(f"{kind} '{name}'")
        return sorted(set(labels))
    return []


def provider_delete(*, provider: OAuthProvider, actor: Any) -> None:
    """Delete a provider after revoking every connection to it at the provider.

    Refused up front, before anything is revoked, while something else (a catalog server)
    still uses the provider."""
    org = provider.organization
    require_perm(org=org, actor=actor, perm=Perm.MANAGE_PROVIDERS)
    users = _users_of_provider(provider)
    if users:
        shown = ", ".join(users[:5]) + (f" and {len(users) - 5} more" if len(users) > 5 else "")
        raise CredentialError(
            f"{provider.name} is still used by {shown}. Point those at another provider (or "
            "delete them) first; nothing was revoked or deleted.",
            code="provider_in_use",
        )
    ids = _mark_revoked(
        Connection.objects.for_org(org).filter(provider=provider),
        actor=actor,
        reason="provider_deleted",
    )
    for connection_id in ids:
        revoke_connection(connection_id=connection_id, actor=actor, force_delete=True)
    try:
        with transaction.atomic():
            PendingAuthorization.objects.filter(provider=provider).delete()
            _audit(
                org=org,
                action="oauth_provider.deleted",
                actor=actor,
                target=provider,
                details={"slug": provider.slug, "connections_revoked": len(ids)},
            )
            provider.delete()
    except ProtectedError as exc:
        # Something started using it while we were revoking: the provider was not deleted.
        users = _users_of_provider(provider)
        if users:
            raise CredentialError(
                f"{provider.name} was not deleted: {', '.join(users[:5])} started using it "
                "meanwhile.",
                code="provider_in_use",
            ) from exc
        raise CredentialError(
            "A member connected to this provider meanwhile; delete it again to revoke that too."
        ) from exc


# --- Consent flow ----------------------------------------------------------------------------


def _session_binding(session: SessionBase) -> str:
    binding = session.get(SESSION_BINDING_KEY)
    if not binding:
        binding = secrets.token_urlsafe(32)
        session[SESSION_BINDING_KEY] = binding
    return binding


def _safe_return_to(return_to: str) -> str:
    if return_to and return_to.startswith("/") and not return_to.startswith("//"):
        return return_to[:500]
    return ""


def authorization_start(
    *, provider: OAuthProvider, user: Any, session: SessionBase, return_to: str = ""
) -> str:
    """Begin "Connect": store a single-use state (hashed) and the PKCE verifier (encrypted),
    bound to this user and browser session; return the provider's authorization URL."""
    org = provider.organization
    require_perm(org=org, actor=user, perm=Perm.CONNECT_ACCOUNTS)
    _check_complete(provider)
    check_url(provider.authorization_endpoint, field="authorization_endpoint")
    state = secrets.token_urlsafe(32)
    verifier, challenge = oauth.new_pkce()
    now = timezone.now()
    ttl = timedelta(seconds=settings.CREDENTIALS_AUTHORIZATION_TTL_SECONDS)
    with transaction.atomic():
        # Old, finished or expired attempts of this user are no longer needed.
        PendingAuthorization.objects.filter(user=user).filter(
            Q(expires_at__lt=now) | Q(used_at__isnull=False)
        ).delete()
        pending = PendingAuthorization(
            organization=org,
            user=user,
            provider=provider,
            state_hash=_hash(state),
            session_binding_hash=_hash(_session_binding(session)),
            redirect_uri=redirect_uri(),
            scopes=provider.scopes,
            resource=provider.resource,
            return_to=_safe_return_to(return_to),
            expires_at=now + ttl,
        )
        pending.code_verifier_blob = vault.encrypt(
            org=org, purpose=VERIFIER_PURPOSE, row_uid=pending.uid, plaintext=verifier
        )
        pending.save()
    return oauth.authorization_url(
        endpoints=provider_endpoints(provider),
        client_id=provider.client_id,
        redirect_uri=pending.redirect_uri,
        scope=pending.scopes,
        state=state,
        code_challenge=challenge,
        resource=pending.resource,
    )


def _flow_failure(
    pending: PendingAuthorization, user: Any, reason: str, message: str
) -> ConsentFlowError:
    _audit_now(
        org=pending.organization,
        action="connection.consent_failed",
        actor=user,
        outcome="failure",
        target=pending.provider,
        details={"provider": pending.provider.slug, "reason": reason},
    )
    return ConsentFlowError(message, code=reason)


def authorization_complete(
    *, user: Any, session: SessionBase, params: dict[str, str]
) -> tuple[Connection, str]:
    """The callback: check the state (known, unused, unexpired, this user, this session) and
    `iss`, exchange the code, store the connection, audit. Returns (connection, return_to).
    Anything wrong raises ConsentFlowError and stores no connection."""
    state = params.get("state") or ""
    if not state or len(state) > 200:
        raise ConsentFlowError(
            "The provider sent you back without a valid state. Start again from Connections.",
            code="missing_state",
        )
    state_hash = _hash(state)
    now = timezone.now()
    # Single use: the first request to present this state consumes it, whatever happens next.
    claimed = PendingAuthorization.objects.filter(
        state_hash=state_hash, used_at__isnull=True
    ).update(used_at=now)
    pending = (
        PendingAuthorization.objects.select_related("provider", "organization")
        .filter(state_hash=state_hash)
        .first()
    )
    if pending is None:
        raise ConsentFlowError(
            "This sign-in link is unknown or was already cleaned up. Start again from Connections.",
            code="unknown_state",
        )
    if pending.user_id != user.pk:
        raise _flow_failure(
            pending,
            user,
            "other_user",
            "This sign-in was started by another user. Start again from Connections.",
        )
    if not claimed:
        raise _flow_failure(
            pending,
            user,
            "replayed_state",
            "This sign-in link was already used. Start again from Connections.",
        )
    binding = session.get(SESSION_BINDING_KEY) or ""
    if not binding or _hash(binding) != pending.session_binding_hash:
        raise _flow_failure(
            pending,
            user,
            "other_session",
            "This sign-in was started in another browser session. Start again from Connections.",
        )
    if pending.expires_at < now:
        raise _flow_failure(
            pending,
            user,
            "expired_state",
            "This sign-in took too long and expired. Start again from Connections.",
        )
    provider = pending.provider
    org = pending.organization
    membership = Membership.objects.filter(organization=org, user=user).first()
    if membership is None or not role_has(membership.role, Perm.CONNECT_ACCOUNTS):
        raise _flow_failure(
            pending, user, "not_allowed", "Your role no longer allows connecting accounts."
        )
    if params.get("error"):
        error = str(params["error"])[:64]
        if error == "access_denied":
            raise _flow_failure(
                pending,
                user,
                "access_denied",
                f"You declined access at {provider.name}; nothing was connected.",
            )
        description = str(params.get("error_description", ""))[:200]
        raise _flow_failure(
            pending,
            user,
            "provider_error",
            f"{provider.name} refused the request ({error}{': ' + description if description else ''}).",
        )
    expected_issuer = (provider.metadata or {}).get("issuer") or provider.issuer
    iss = params.get("iss")
    if iss is not None and expected_issuer and iss.rstrip("/") != expected_issuer.rstrip("/"):
        raise _flow_failure(
            pending,
            user,
            "issuer_mismatch",
            "The answer came from a different authorization server than the one you were sent "
            "to (issuer mismatch); nothing was connected.",
        )
    if iss is None and (provider.metadata or {}).get(
        "authorization_response_iss_parameter_supported"
    ):
        raise _flow_failure(
            pending,
            user,
            "issuer_missing",
            "The provider's answer lacks its issuer (iss); nothing was connected.",
        )
    code = params.get("code") or ""
    if not code or len(code) > 2000:
        raise _flow_failure(
            pending,
            user,
            "missing_code",
            f"{provider.name} sent you back without an authorization code. Try again.",
        )
    try:
        verifier = vault.decrypt(
            org=org, purpose=VERIFIER_PURPOSE, row_uid=pending.uid, blob=pending.code_verifier_blob
        )
        tokens = oauth.exchange_code(
            endpoints=provider_endpoints(provider),
            client=provider_client(provider),
            code=code,
            redirect_uri=pending.redirect_uri,
            code_verifier=verifier,
            resource=pending.resource,
        )
    except (ProviderError, VaultError, UnsafeURLError) as exc:
        raise _flow_failure(pending, user, "exchange_failed", exc.message) from exc
    with transaction.atomic():
        connection = (
            Connection.objects.select_for_update().filter(user=user, provider=provider).first()
        )
        reconnect = connection is not None
        if connection is None:
            connection = Connection(organization=org, user=user, provider=provider)
        _store_tokens(connection, tokens, now=now)
        connection.consented_at = now
        connection.consent_client_id = provider.client_id
        connection.consent_scopes = pending.scopes
        connection.consent_redirect_uri = pending.redirect_uri
        connection.consent_resource = pending.resource
        connection.save()
        pending.delete()
        _audit(
            org=org,
            action="connection.reconnected" if reconnect else "connection.created",
            actor=user,
            on_behalf_of=user,
            target=connection,
            details={
                "provider": provider.slug,
                "client_id": provider.client_id,
                "requested_scopes": connection.consent_scopes,
                "granted_scopes": connection.scopes,
                "resource": connection.consent_resource,
                "expires_at": connection.expires_at.isoformat() if connection.expires_at else None,
                "has_refresh_token": bool(connection.refresh_token_blob),
            },
        )
    return connection, pending.return_to


def _store_tokens(connection: Connection, tokens: oauth.TokenSet, *, now: Any) -> None:
    org_id = connection.organization_id
    connection.access_token_blob = vault.encrypt(
        org=org_id, purpose=ACCESS_PURPOSE, row_uid=connection.uid, plaintext=tokens.access_token
    )
    if tokens.refresh_token:
        connection.refresh_token_blob = vault.encrypt(
            org=org_id,
            purpose=REFRESH_PURPOSE,
            row_uid=connection.uid,
            plaintext=tokens.refresh_token,
        )
    connection.token_type = tokens.token_type
    connection.expires_at = (
        now + timedelta(seconds=tokens.expires_in) if tokens.expires_in else None
    )
    if tokens.scope is not None:
        connection.scopes = " ".join(tokens.scope.split())[:1000]
    elif not connection.scopes:
        connection.scopes = connection.consent_scopes or connection.provider.scopes
    connection.status = ConnectionStatus.ACTIVE
    connection.last_error = ""
    connection.refresh_failures = 0
    connection.next_attempt_at = None
    connection.updated_at = now


# --- Refresh ---------------------------------------------------------------------------------


def _due_filter(now: Any, window: timedelta) -> Q:
    return (
        Q(status__in=[ConnectionStatus.ACTIVE, ConnectionStatus.ERROR])
        & Q(expires_at__isnull=False, expires_at__lte=now + window)
        & ~Q(refresh_token_blob="")
        & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    )


def refresh_window() -> timedelta:
    return timedelta(seconds=settings.CREDENTIALS_REFRESH_WINDOW_SECONDS)


def connection_refresh(*, connection_id: int, inline: bool = False) -> Connection | None:
    """Refresh one connection if it is still due, under its row lock.

    The worker (`inline=False`) skips a row another worker holds (`skip_locked`) and one that is
    no longer due once locked (someone refreshed it a moment ago): one provider call per
    expiry. The gateway (`inline=True`) waits for the lock instead, then re-checks.
    Returns the connection as it is afterwards, or None when skipped."""
    now = timezone.now()
    window = EXPIRY_SKEW if inline else refresh_window()
    with transaction.atomic():
        connection = (
            Connection.objects.select_for_update(skip_locked=not inline, of=("self",))
            .select_related("provider", "organization", "user")
            .filter(pk=connection_id)
            .first()
        )
        if connection is None or not _still_due(connection, now=now, window=window):
            return connection
        provider = connection.provider
        try:
            refresh_token = vault.decrypt(
                org=connection.organization_id,
                purpose=REFRESH_PURPOSE,
                row_uid=connection.uid,
                blob=connection.refresh_token_blob,
            )
            tokens = oauth.refresh(
                endpoints=provider_endpoints(provider),
                client=provider_client(provider),
                refresh_token=refresh_token,
                resource=connection.consent_resource,
            )
        except ProviderError as exc:
            _record_refresh_failure(connection, exc, now=now)
            return connection
        except (VaultError, UnsafeURLError) as exc:
            _record_refresh_failure(
                connection, ProviderError(exc.message, transient=False), now=now
            )
            return connection
        _store_tokens(connection, tokens, now=now)
        connection.last_refreshed_at = now
        connection.save()
        _audit(
            org=connection.organization,
            action="connection.refreshed",
            on_behalf_of=connection.user,
            target=connection,
            details={
                "provider": provider.slug,
                "inline": inline,
                "rotated_refresh_token": bool(tokens.refresh_token),
                "expires_at": connection.expires_at.isoformat() if connection.expires_at else None,
            },
        )
        return connection


def _still_due(connection: Connection, *, now: Any, window: timedelta) -> bool:
    """Re-checked under the lock: another worker may have refreshed it a moment ago. Backoff
    after a failure holds for the inline path too, so a broken provider is not hammered."""
    if connection.status not in (ConnectionStatus.ACTIVE, ConnectionStatus.ERROR):
        return False
    if not connection.refresh_token_blob or connection.expires_at is None:
        return False
    if connection.expires_at > now + window:
        return False
    return connection.next_attempt_at is None or connection.next_attempt_at <= now


def _record_refresh_failure(connection: Connection, exc: ProviderError, *, now: Any) -> None:
    connection.last_error = exc.message[:500]
    connection.updated_at = now
    if exc.error == "invalid_grant":
        # The grant is gone at the provider (revoked, expired, or the user changed password):
        # only the user can fix this, by connecting again.
        connection.status = ConnectionStatus.NEEDS_RECONSENT
        connection.next_attempt_at = None
        outcome, reason = "failure", "invalid_grant"
    else:
        connection.refresh_failures += 1
        connection.next_attempt_at = now + _backoff(connection.refresh_failures)
        expired = connection.expires_at is not None and connection.expires_at <= now
        if not exc.transient or expired:
            connection.status = ConnectionStatus.ERROR
        outcome, reason = "error", "transient" if exc.transient else (exc.error or "provider_error")
    connection.save()
    _audit(
        org=connection.organization,
        action="connection.refresh_failed",
        on_behalf_of=connection.user,
        target=connection,
        outcome=outcome,
        details={
            "provider": connection.provider.slug,
            "reason": reason,
            "status": connection.status,
            "attempt": connection.refresh_failures,
            "next_attempt_at": connection.next_attempt_at.isoformat()
            if connection.next_attempt_at
            else None,
            "error": connection.last_error,
        },
    )


def refresh_due_connections(*, limit: int = 500) -> dict[str, int]:
    """One worker pass: refresh connections expiring within the window (bounded), and retry
    revocations that are pending. Returns counts."""
    now = timezone.now()
    ids = list(
        Connection.objects.filter(_due_filter(now, refresh_window()))
        .order_by("expires_at")
        .values_list("pk", flat=True)[:limit]
    )
    counts = {"due": len(ids), "refreshed": 0, "skipped": 0, "failed": 0, "revocations": 0}
    for connection_id in ids:
        before = now
        connection = connection_refresh(connection_id=connection_id)
        if connection is None or (
            connection.last_refreshed_at is None or connection.last_refreshed_at < before
        ):
            if connection is not None and connection.last_error and connection.updated_at >= before:
                counts["failed"] += 1
            else:
                counts["skipped"] += 1
        else:
            counts["refreshed"] += 1
    revoke_ids = list(
        Connection.objects.filter(status=ConnectionStatus.REVOKED)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .values_list("pk", flat=True)[:limit]
    )
    for connection_id in revoke_ids:
        revoke_connection(connection_id=connection_id)
        counts["revocations"] += 1
    return counts


# --- The gateway hook ------------------------------------------------------------------------


@dataclass(frozen=True)
class UpstreamCredential:
    """What the gateway sends upstream for one user: the access token, and which connection it
    came from (the audit trail names the connection, never the token)."""

    token: str
    connection_id: int

    def __repr__(self) -> str:  # never print the token
        return f"UpstreamCredential(connection_id={self.connection_id})"


def access_token_for(*, user: Any, provider: OAuthProvider) -> str:
    """A valid access token of `user` at `provider`, for the gateway to send upstream.

    Refreshes inline (under the same row lock as the worker) when the token expired. Raises
    ConsentRequired (with `consent_url`) when the user has no usable grant, CredentialError for
    anything else (provider down, vault failure): the caller fails closed."""
    return access_credential_for(user=user, provider=provider).token


def access_credential_for(*, user: Any, provider: OAuthProvider) -> UpstreamCredential:
    """`access_token_for`, plus the id of the connection the token belongs to (for the audit)."""
    if not getattr(user, "is_active", False):
        raise CredentialError("This user is deactivated; their credentials cannot be used.")
    connection = (
        Connection.objects.filter(user=user, provider=provider)
        .only(
            "pk",
            "uid",
            "organization_id",
            "status",
            "expires_at",
            "access_token_blob",
            "refresh_token_blob",
            "last_error",
        )
        .first()
    )
    if connection is None or connection.status in (
        ConnectionStatus.NEEDS_RECONSENT,
        ConnectionStatus.REVOKED,
    ):
        raise _consent_required(provider, connection)
    now = timezone.now()
    fresh = connection.expires_at is None or connection.expires_at > now + EXPIRY_SKEW
    if fresh and connection.access_token_blob:
        return UpstreamCredential(_decrypt_access(connection), connection.pk)
    if not connection.refresh_token_blob:
        raise _consent_required(provider, connection)
    refreshed = connection_refresh(connection_id=connection.pk, inline=True)
    if refreshed is None:
        raise _consent_required(provider, None)
    if refreshed.status == ConnectionStatus.NEEDS_RECONSENT:
        raise _consent_required(provider, refreshed)
    now = timezone.now()
    if refreshed.status == ConnectionStatus.ACTIVE and (
        refreshed.expires_at is None or refreshed.expires_at > now
    ):
        return UpstreamCredential(_decrypt_access(refreshed), refreshed.pk)
    raise CredentialError(
        f"Your {provider.name} token could not be refreshed right now "
        f"({refreshed.last_error or 'provider unavailable'}); try again shortly.",
        code="credential_unavailable",
    )


def _decrypt_access(connection: Connection) -> str:
    return vault.decrypt(
        org=connection.organization_id,
        purpose=ACCESS_PURPOSE,
        row_uid=connection.uid,
        blob=connection.access_token_blob,
    )


def _consent_required(provider: OAuthProvider, connection: Connection | None) -> ConsentRequired:
    if connection is None:
        message = f"Connect your {provider.name} account first"
    elif connection.status == ConnectionStatus.REVOKED:
        message = f"Your {provider.name} connection was revoked; connect again"
    else:
        message = f"Your {provider.name} access expired or was withdrawn; connect again"
    url = consent_url_for(provider)
    return ConsentRequired(f"{message}: {url}", consent_url=url, provider_slug=provider.slug)


# --- Disconnect and revocation ---------------------------------------------------------------


def _mark_revoked(queryset: Any, *, actor: Any, reason: str) -> list[int]:
    """Stop every use of these connections now (status revoked), audited; returns their ids.
    Revocation at the provider and deletion follow (`revoke_connection`)."""
    ids: list[int] = []
    with transaction.atomic():
        for connection in queryset.select_for_update(of=("self",)).select_related(
            "provider", "user"
        ):
            if connection.status != ConnectionStatus.REVOKED:
                connection.status = ConnectionStatus.REVOKED
                connection.next_attempt_at = None
                connection.refresh_failures = 0
                connection.updated_at = timezone.now()
                connection.save(
                    update_fields=["status", "next_attempt_at", "refresh_failures", "updated_at"]
                )
                _audit(
                    org=connection.organization,
                    action="connection.revoke_requested",
                    actor=actor,
                    on_behalf_of=connection.user,
                    target=connection,
                    details={"provider": connection.provider.slug, "reason": reason},
                )
            ids.append(connection.pk)
    return ids


def connection_disconnect(*, connection: Connection, actor: Any) -> bool:
    """The user disconnects: stop using the grant, revoke it at the provider (RFC 7009), delete
    it. Returns True when done, False when the provider could not be reached (the connection
    stays `revoked`, unusable, and the worker retries the revocation)."""
    org = connection.organization
    if actor.pk != connection.user_id:
        require_perm(org=org, actor=actor, perm=Perm.MANAGE_MEMBERS)
    _mark_revoked(Connection.objects.filter(pk=connection.pk), actor=actor, reason="disconnect")
    return revoke_connection(connection_id=connection.pk, actor=actor)


def revoke_connection(
    *, connection_id: int, actor: Any | None = None, force_delete: bool = False
) -> bool:
    """Revoke a `revoked`-status connection at the provider, then delete it (audited). On a
    transient failure keep it (unusable) and schedule a retry with backoff; after
    MAX_REVOKE_ATTEMPTS (or with `force_delete`) delete it anyway, audited as a failure."""
    connection = (
        Connection.objects.select_related("provider", "organization", "user")
        .filter(pk=connection_id, status=ConnectionStatus.REVOKED)
        .first()
    )
    if connection is None:
        return True
    provider = connection.provider
    revoked_at_provider, error = _revoke_tokens(connection)
    now = timezone.now()
    with transaction.atomic():
        locked = (
            Connection.objects.select_for_update(of=("self",))
            .filter(pk=connection_id, status=ConnectionStatus.REVOKED)
            .first()
        )
        if locked is None:
            return True
        attempts = locked.refresh_failures + 1
        if error and not force_delete and attempts < MAX_REVOKE_ATTEMPTS:
            locked.refresh_failures = attempts
            locked.next_attempt_at = now + _backoff(attempts)
            locked.last_error = error[:500]
            locked.updated_at = now
            locked.save(
                update_fields=["refresh_failures", "next_attempt_at", "last_error", "updated_at"]
            )
            _audit(
                org=connection.organization,
                action="connection.revoke_failed",
                actor=actor,
                on_behalf_of=connection.user,
                target=connection,
                outcome="error",
                details={
                    "provider": provider.slug,
                    "attempt": attempts,
                    "next_attempt_at": locked.next_attempt_at.isoformat(),
                    "error": error[:300],
                },
            )
            return False
        _audit(
            org=connection.organization,
            action="connection.deleted",
            actor=actor,
            on_behalf_of=connection.user,
            target=connection,
            outcome="success" if not error else "failure",
            details={
                "provider": provider.slug,
                "revoked_at_provider": revoked_at_provider,
                "error": (error or "")[:300],
            },
        )
        locked.delete()
    return True


def _revoke_tokens(connection: Connection) -> tuple[bool, str]:
    """(revoked at the provider?, error message or ""). Revoking the refresh token ends the
    whole grant at most providers; the access token is revoked too where there is one."""
    provider = connection.provider
    if not provider.revocation_endpoint:
        return False, ""
    try:
        client = provider_client(provider)
        endpoints = provider_endpoints(provider)
        pairs = []
        if connection.refresh_token_blob:
            pairs.append((REFRESH_PURPOSE, connection.refresh_token_blob, "refresh_token"))
        if connection.access_token_blob:
            pairs.append((ACCESS_PURPOSE, connection.access_token_blob, "access_token"))
        for purpose, blob, hint in pairs:
            token = vault.decrypt(
                org=connection.organization_id, purpose=purpose, row_uid=connection.uid, blob=blob
            )
            oauth.revoke(endpoints=endpoints, client=client, token=token, token_type_hint=hint)
    except (ProviderError, UnsafeURLError) as exc:
        return False, exc.message
    except VaultError as exc:
        # Unreadable tokens cannot be revoked by us and never will be: delete locally.
        return False, exc.message
    return True, ""


def on_membership_ended(*, org: Any, user: Any, actor: Any) -> None:
    """tenants hook (inside the removal's transaction): stop every grant of the leaving user in
    this org at once; revocation at the provider and deletion run after commit (and are
    retried by the worker if the provider is down)."""
    PendingAuthorization.objects.for_org(org).filter(user=user).delete()
    ids = _mark_revoked(
        Connection.objects.for_org(org).filter(user=user), actor=actor, reason="membership_ended"
    )
    if ids:
        from credentials.tasks import revoke_connection_task

        def _enqueue() -> None:
            for connection_id in ids:
                revoke_connection_task.delay(connection_id)

        transaction.on_commit(_enqueue, robust=True)
