"""Models of the credentials app: the vault's per-organization data keys, OAuth providers,
users' connections (encrypted tokens + consent record), pending authorizations and key
rotation jobs."""

import uuid

from django.db import models
from django.utils import timezone

from tenants.scoping import OrgOwned


class OrgDataKey(OrgOwned):
    """An organization's AES-256 data key, stored only wrapped (AES-GCM) by a master key of the
    key ring. Exactly one active key per organization encrypts; every key (active or retired)
    still decrypts the blobs that name it. Rotation re-wraps keys under the newest master key
    (`master_key_id` changes, the data key itself does not) or retires a key after every blob
    was re-encrypted under a fresh one."""

    organization = models.ForeignKey(
        "tenants.Organization", on_delete=models.CASCADE, related_name="vault_data_keys"
    )
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # base64url(nonce || AES-GCM(master key, data key, aad=org + uid)); never the key in clear.
    wrapped_key = models.TextField()
    master_key_id = models.CharField(max_length=64, db_index=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    rewrapped_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization"],
                condition=models.Q(active=True),
                name="credentials_one_active_data_key_per_org",
            )
        ]

    def __str__(self) -> str:
        return f"data key {self.pk} of org {self.organization_id} (master {self.master_key_id})"


class TokenAuthMethod(models.TextChoices):
    CLIENT_SECRET_BASIC = "client_secret_basic", "Client secret (HTTP Basic)"
    CLIENT_SECRET_POST = "client_secret_post", "Client secret (form body)"
    NONE = "none", "Public client (no secret)"


class OAuthProvider(OrgOwned):
    """An upstream authorization server the organization's members connect their accounts to
    (a Slack / Jira / Google stand-in), managed by admins. Endpoints come from RFC 8414 / OIDC
    discovery of `issuer`, or are entered explicitly (explicit values win)."""

    organization = models.ForeignKey(
        "tenants.Organization", on_delete=models.CASCADE, related_name="oauth_providers"
    )
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=50)
    issuer = models.URLField(max_length=500, blank=True)
    authorization_endpoint = models.URLField(max_length=500, blank=True)
    token_endpoint = models.URLField(max_length=500, blank=True)
    revocation_endpoint = models.URLField(max_length=500, blank=True)
    introspection_endpoint = models.URLField(max_length=500, blank=True)
    client_id = models.CharField(max_length=255)
    # Vault blob (purpose "credentials.oauthprovider.client_secret"); "" for a public client.
    client_secret_blob = models.TextField(blank=True, editable=False)
    token_endpoint_auth_method = models.CharField(
        max_length=32, choices=TokenAuthMethod.choices, default=TokenAuthMethod.CLIENT_SECRET_BASIC
    )
    scopes = models.CharField(
        max_length=1000, blank=True, help_text="Space-separated scopes requested on connect."
    )
    pkce_required = models.BooleanField(
        default=True,
        help_text="Refuse a provider whose metadata does not advertise PKCE S256. "
        "PKCE S256 is always sent.",
    )
    resource = models.CharField(
        max_length=500, blank=True, help_text="RFC 8707 resource indicator sent on connect."
    )
    # The discovery document as last fetched (public metadata, not secret).
    metadata = models.JSONField(default=dict, blank=True)
    discovered_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        "tenants.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "slug"], name="credentials_provider_slug_per_org"
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_public_client(self) -> bool:
        return self.token_endpoint_auth_method == TokenAuthMethod.NONE

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split()


class ConnectionStatus(models.TextChoices):
    ACTIVE = "active", "Connected"
    NEEDS_RECONSENT = "needs_reconsent", "Needs re-consent"
    REVOKED = "revoked", "Revoked (pending revocation at the provider)"
    ERROR = "error", "Error"


class Connection(OrgOwned):
    """One user's grant at one provider: encrypted tokens, expiry, scopes and the consent record.

    Tokens live only as vault blobs bound to this row's uid. The refresh worker and the gateway's
    inline refresh both take this row's lock (`select_for_update`), so a rotating refresh token
    is never used twice."""

    organization = models.ForeignKey(
        "tenants.Organization", on_delete=models.CASCADE, related_name="oauth_connections"
    )
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(
        "tenants.User", on_delete=models.CASCADE, related_name="oauth_connections"
    )
    # PROTECT: a provider is deleted by a service that first revokes its connections.
    provider = models.ForeignKey(
        OAuthProvider, on_delete=models.PROTECT, related_name="connections"
    )
    access_token_blob = models.TextField(blank=True, editable=False)
    refresh_token_blob = models.TextField(blank=True, editable=False)
    token_type = models.CharField(max_length=40, default="Bearer")
    expires_at = models.DateTimeField(null=True, blank=True)
    scopes = models.CharField(max_length=1000, blank=True, help_text="Scopes the provider granted.")
    status = models.CharField(
        max_length=20, choices=ConnectionStatus.choices, default=ConnectionStatus.ACTIVE
    )
    last_error = models.CharField(max_length=500, blank=True)
    # Consent record: who consented (user), when, to which client, which scopes, for what.
    consented_at = models.DateTimeField(default=timezone.now)
    consent_client_id = models.CharField(max_length=255, blank=True)
    consent_scopes = models.CharField(max_length=1000, blank=True)
    consent_redirect_uri = models.CharField(max_length=500, blank=True)
    consent_resource = models.CharField(max_length=500, blank=True)
    # Refresh bookkeeping: transient failures back off (never delete anything).
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    refresh_failures = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["provider__name"]
        constraints = [
            models.UniqueConstraint(fields=["user", "provider"], name="credentials_one_grant")
        ]
        indexes = [models.Index(fields=["status", "expires_at"], name="credentials_conn_expiry")]

    def __str__(self) -> str:
        return f"{self.provider.name} connection of {self.user}"


class PendingAuthorization(OrgOwned):
    """A started "Connect": the single-use `state` (stored hashed), the PKCE verifier (vault),
    bound to the user and their session, expiring after CREDENTIALS_AUTHORIZATION_TTL_SECONDS."""

    organization = models.ForeignKey(
        "tenants.Organization", on_delete=models.CASCADE, related_name="+"
    )
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey("tenants.User", on_delete=models.CASCADE, related_name="+")
    provider = models.ForeignKey(OAuthProvider, on_delete=models.CASCADE, related_name="+")
    state_hash = models.CharField(max_length=64, unique=True)
    # sha256 of a random value kept in the user's session: a state from another browser fails.
    session_binding_hash = models.CharField(max_length=64)
    code_verifier_blob = models.TextField(editable=False)
    redirect_uri = models.CharField(max_length=500)
    scopes = models.CharField(max_length=1000, blank=True)
    resource = models.CharField(max_length=500, blank=True)
    return_to = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"pending authorization {self.pk} ({self.provider_id})"


class RotationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class VaultRotation(models.Model):
    """A key rotation job (deployment-wide, not tenant-owned). Progress is persisted after each
    bounded batch, so a killed worker resumes where it stopped."""

    target_master_key_id = models.CharField(max_length=64)
    reencrypt = models.BooleanField(default=False)
    status = models.CharField(
        max_length=16, choices=RotationStatus.choices, default=RotationStatus.PENDING
    )
    phase = models.CharField(max_length=32, default="rewrap")
    # Re-encryption cursor: index into the registry of encrypted fields and the last pk done.
    cursor = models.JSONField(default=dict, blank=True)
    keys_total = models.PositiveIntegerField(default=0)
    keys_done = models.PositiveIntegerField(default=0)
    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    started_by = models.ForeignKey(
        "tenants.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"vault rotation {self.pk} -> {self.target_master_key_id} ({self.status})"
