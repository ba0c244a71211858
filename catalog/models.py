"""The catalog: MCP servers an organization knows about, their reviewed versions and the tool
definitions each version pinned.

A Server says how to reach an upstream (Streamable HTTP URL or a stdio command) and what it
needs (egress hosts, upstream auth). A ServerVersion is one fetched snapshot of the upstream's
tool definitions, with scanner findings and a review decision. Approving a version pins the
`definition_hash` of each of its tools: the gateway lists and calls only tools whose live
definition still hashes to the pinned value; a tool that drifted is quarantined.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from tenants.models import slug_validator
from tenants.scoping import OrgOwned


class Transport(models.TextChoices):
    HTTP = "http", "Streamable HTTP"
    STDIO = "stdio", "stdio (local command)"


class AuthMode(models.TextChoices):
    NONE = "none", "None"
    STATIC = "static", "Static secret (headers)"
    OAUTH = "oauth", "Per-user OAuth"


class Classification(models.TextChoices):
    PUBLIC = "public", "Public"
    INTERNAL = "internal", "Internal"
    CONFIDENTIAL = "confidential", "Confidential"
    RESTRICTED = "restricted", "Restricted"


class ServerStatus(models.TextChoices):
    """Where the server stands as a whole. `approved` means agents can use its approved version;
    a newer version under review does not change that."""

    DRAFT = "draft", "Draft"
    SUBMITTED = "submitted", "Submitted"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    DEPRECATED = "deprecated", "Deprecated"
    RETIRED = "retired", "Retired"


class VersionStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SUBMITTED = "submitted", "Submitted"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    SUPERSEDED = "superseded", "Superseded"


class VersionOrigin(models.TextChoices):
    MANUAL = "manual", "Fetched by a person"
    DRIFT = "drift", "Created by drift detection"


OPEN_VERSION_STATUSES = (VersionStatus.DRAFT, VersionStatus.SUBMITTED)
# Servers whose approved tools the gateway serves (deprecated ones still work, with a warning).
SERVING_STATUSES = (ServerStatus.APPROVED, ServerStatus.DEPRECATED)


class Server(OrgOwned):
    organization = models.ForeignKey(
        "tenants.Organization", on_delete=models.CASCADE, related_name="catalog_servers"
    )
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    # Agents see tools as `<slug>.<tool>`: the slug validator allows no dots.
    slug = models.SlugField(max_length=50, validators=[slug_validator])
    description = models.TextField(blank=True, max_length=4000)
    purpose = models.TextField(blank=True, max_length=2000)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="owned_servers",
    )
    team = models.ForeignKey(
        "tenants.Team",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="servers",
    )
    tags = models.JSONField(default=list, blank=True)
    data_classification = models.CharField(
        max_length=16, choices=Classification.choices, default=Classification.INTERNAL
    )
    sla = models.CharField(max_length=200, blank=True)
    sla_target = models.CharField(max_length=50, blank=True, help_text="e.g. 99.9%")
    docs_url = models.URLField(blank=True, max_length=500)
    # Hosts the server may reach (and, for HTTP servers, the URL's host must be one of them).
    egress_hosts = models.JSONField(default=list, blank=True)
    dependencies = models.ManyToManyField(
        "self", symmetrical=False, blank=True, related_name="dependents"
    )

    transport = models.CharField(max_length=8, choices=Transport.choices, default=Transport.HTTP)
    url = models.URLField(blank=True, max_length=500)
    auth_mode = models.CharField(max_length=8, choices=AuthMode.choices, default=AuthMode.NONE)
    # auth_mode "oauth": each acting user's own Connection to this provider is sent upstream
    # (never an agent's key). PROTECT: a provider in use by a server cannot vanish under it.
    oauth_provider = models.ForeignKey(
        "credentials.OAuthProvider",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="catalog_servers",
    )
    # Static secret headers: names in clear (for review), values only in the vault blob.
    static_header_names = models.JSONField(default=list, blank=True)
    static_headers_blob = models.TextField(blank=True)
    command = models.CharField(max_length=500, blank=True)
    args = models.JSONField(default=list, blank=True)
    env_names = models.JSONField(default=list, blank=True)
    env_blob = models.TextField(blank=True)
    working_dir = models.CharField(max_length=500, blank=True)

    status = models.CharField(
        max_length=12, choices=ServerStatus.choices, default=ServerStatus.DRAFT
    )
    approved_version = models.ForeignKey(
        "catalog.ServerVersion",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    status_reason = models.TextField(blank=True, max_length=2000)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # Drift sync bookkeeping: a worker claims a server by moving sync_claimed_at forward.
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_sync_error = models.TextField(blank=True)
    sync_claimed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "slug"], name="uniq_server_org_slug")
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def connection_snapshot(self) -> dict:
        """The non-secret connection config a reviewer approves. Secret *values* are not part
        of it (rotating a token needs no review); their names are."""
        return {
            "transport": self.transport,
            "url": self.url if self.transport == Transport.HTTP else "",
            "command": self.command if self.transport == Transport.STDIO else "",
            "args": list(self.args or []) if self.transport == Transport.STDIO else [],
            "env_names": list(self.env_names or []) if self.transport == Transport.STDIO else [],
            "working_dir": self.working_dir if self.transport == Transport.STDIO else "",
            "auth_mode": self.auth_mode,
            "static_header_names": list(self.static_header_names or []),
            "oauth_provider_id": self.oauth_provider_id,
            "egress_hosts": sorted(self.egress_hosts or []),
        }

    @property
    def connection_changed_since_approval(self) -> bool:
        approved = self.approved_version
        return approved is not None and approved.config_snapshot != self.connection_snapshot()


class ServerVersion(OrgOwned):
    organization = models.ForeignKey(
        "tenants.Organization", on_delete=models.CASCADE, related_name="catalog_versions"
    )
    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    label = models.CharField(max_length=100, blank=True)
    status = models.CharField(
        max_length=12, choices=VersionStatus.choices, default=VersionStatus.DRAFT
    )
    origin = models.CharField(
        max_length=8, choices=VersionOrigin.choices, default=VersionOrigin.MANUAL
    )
    # What was reviewed: the non-secret connection config as it was when tools were fetched.
    config_snapshot = models.JSONField(default=dict, blank=True)
    server_info = models.JSONField(default=dict, blank=True)
    findings = models.JSONField(default=list, blank=True)
    tools_digest = models.CharField(max_length=64, blank=True)
    fetched_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    submitted_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True, max_length=4000)
    findings_acknowledged = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["server", "number"], name="uniq_version_server_number"),
            # At most one version in the works per server: concurrent fetches cannot fork it.
            models.UniqueConstraint(
                fields=["server"],
                condition=Q(status__in=["draft", "submitted"]),
                name="uniq_open_version_per_server",
            ),
        ]
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"{self.server.name} v{self.number}"

    @property
    def high_findings(self) -> list[dict]:
        return [f for f in self.findings if f.get("severity") == "high"]

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_VERSION_STATUSES


class Tool(OrgOwned):
    organization = models.ForeignKey(
        "tenants.Organization", on_delete=models.CASCADE, related_name="catalog_tools"
    )
    version = models.ForeignKey(ServerVersion, on_delete=models.CASCADE, related_name="tools")
    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="tools")
    name = models.CharField(max_length=128)
    title = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    input_schema = models.JSONField(default=dict)
    output_schema = models.JSONField(null=True, blank=True)
    annotations = models.JSONField(null=True, blank=True)
    definition_hash = models.CharField(max_length=64)
    # Set on an approved version's tool whose live definition no longer matches (or vanished).
    quarantined = models.BooleanField(default=False)
    quarantined_at = models.DateTimeField(null=True, blank=True)
    quarantine_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["version", "name"], name="uniq_tool_version_name")
        ]
        indexes = [models.Index(fields=["organization", "name"], name="catalog_tool_org_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class FetchState(models.TextChoices):
    QUEUED = "queued", "Queued"
    CONNECTING = "connecting", "Connecting"
    LISTING = "listing", "Listing tools"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


ACTIVE_FETCH_STATES = (FetchState.QUEUED, FetchState.CONNECTING, FetchState.LISTING)
# A headline per error class, above the detailed message (catalog.errors.UpstreamError codes).
FETCH_ERROR_TITLES = {
    "unreachable": "The server is down or unreachable",
    "timeout": "The server is too slow",
    "not_mcp": "This is not an MCP server",
    "too_large": "The server's answer is too large",
    "too_many_tools": "The server lists too many tools",
    "invalid_definitions": "The tool definitions are invalid",
    "egress_refused": "The gateway may not connect there",
    "auth_required": "The server refused the credentials",
    "consent_required": "Your account is not connected",
    "credential_unavailable": "Your credential cannot be used right now",
}


class FetchJob(OrgOwned):
    """One "Fetch tools" request, run by a worker (`fetch_tools_task`): its progress for the
    page that polls it, and its outcome (the draft version, or a clear error). Nothing secret
    is stored here: error messages are redacted by catalog.upstream; a consent URL is public."""

    organization = models.ForeignKey(
        "tenants.Organization", on_delete=models.CASCADE, related_name="catalog_fetch_jobs"
    )
    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="fetch_jobs")
    # Whose credential is used for a per-user OAuth server (and who asked).
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    state = models.CharField(max_length=12, choices=FetchState.choices, default=FetchState.QUEUED)
    tools_so_far = models.PositiveIntegerField(default=0)
    version = models.ForeignKey(
        ServerVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True, max_length=2000)
    consent_url = models.URLField(blank=True, max_length=500)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["server", "state"], name="catalog_fetchjob_server_state")]

    def __str__(self) -> str:
        return f"fetch of {self.server_id} ({self.state})"

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_FETCH_STATES

    @property
    def error_title(self) -> str:
        return FETCH_ERROR_TITLES.get(self.error_code, "Fetching the tools failed")
