"""AuditEvent: one immutable row per state change or gateway call.

Rows never reference other tables with database constraints: a trail must outlive the users,
agents and servers it speaks of, and deleting those must never need to touch (UPDATE) an audit
row. Ids are kept alongside readable labels captured at the time of the event.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone

from tenants.scoping import OrgScopedQuerySet


class Outcome(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
    DENIED = "denied", "Denied"
    ERROR = "error", "Error"


class AuditEvent(models.Model):
    organization = models.ForeignKey(
        "tenants.Organization",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        related_name="+",
    )
    occurred_at = models.DateTimeField(default=timezone.now)
    action = models.CharField(max_length=64)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.SUCCESS)

    actor_user_id = models.BigIntegerField(null=True, blank=True)
    actor_label = models.CharField(max_length=254, blank=True)
    agent_id = models.BigIntegerField(null=True, blank=True)
    agent_label = models.CharField(max_length=100, blank=True)
    on_behalf_of_id = models.BigIntegerField(null=True, blank=True)
    on_behalf_of_label = models.CharField(max_length=254, blank=True)

    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=255, blank=True)

    # Gateway calls fill these; indexed columns (not JSON) so filters and rollups stay fast.
    server = models.CharField(max_length=100, blank=True)
    tool = models.CharField(max_length=200, blank=True)
    decision = models.CharField(max_length=8, blank=True)
    error_class = models.CharField(max_length=32, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    upstream_latency_ms = models.FloatField(null=True, blank=True)

    details = models.JSONField(default=dict, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["organization", "-id"], name="audit_org_id"),
            models.Index(fields=["organization", "action", "-id"], name="audit_org_action"),
            models.Index(fields=["organization", "occurred_at"], name="audit_org_time"),
            models.Index(fields=["organization", "server", "tool", "-id"], name="audit_org_tool"),
            models.Index(fields=["request_id"], name="audit_request"),
            # The auditor's most common "who" filters, each walked newest-first by keyset.
            models.Index(fields=["organization", "actor_label", "-id"], name="audit_org_actor"),
            models.Index(fields=["organization", "agent_label", "-id"], name="audit_org_agent"),
            models.Index(
                fields=["organization", "on_behalf_of_label", "-id"], name="audit_org_obo"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.action} {self.outcome}"

    def save(self, *args: object, **kwargs: object) -> None:
        # Append-only at the application level too (on Postgres a trigger refuses
        # UPDATE and DELETE too: see migration 0002).
        if self.pk is not None and not self._state.adding:
            raise RuntimeError("Audit events are append-only and cannot be changed.")
        super().save(*args, **kwargs)


class SealKind(models.TextChoices):
    EVENTS = "events", "Events sealed"
    PURGE = "purge", "Retention purge"


class AuditSeal(models.Model):
    """One link of an organization's hash chain over its audit rows.

    `hash` = sha256 over the previous seal's hash, this seal's header and the full sha256 of the
    canonical form of every row it covers, in id order (see audit.sealing). `entries` keeps a
    short digest per row (`<id>:<16 hex>` per line) so `audit_verify` can name the exact row that
    changed, disappeared or appeared, not just the seal. A purge seal covers no rows: it records,
    inside the chain, which sealed range retention removed.
    """

    organization = models.ForeignKey(
        "tenants.Organization",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        related_name="+",
    )
    # "org:<id>" or "system" (events recorded without an organization); unique with sequence, so
    # two sealers racing on one chain cannot both append the same link.
    chain = models.CharField(max_length=32)
    sequence = models.PositiveBigIntegerField()
    kind = models.CharField(max_length=8, choices=SealKind.choices, default=SealKind.EVENTS)
    first_event_id = models.BigIntegerField(null=True)
    last_event_id = models.BigIntegerField(null=True)
    event_count = models.PositiveIntegerField(default=0)
    last_occurred_at = models.DateTimeField(null=True)
    previous_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    entries = models.TextField(blank=True)
    note = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["chain", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["chain", "sequence"], name="uniq_audit_seal_chain_seq")
        ]

    def __str__(self) -> str:
        return f"seal {self.chain}#{self.sequence} ({self.kind})"


class AuditRetention(models.Model):
    """Per-organization retention. No row, or `retention_days` empty, means keep forever."""

    organization = models.OneToOneField(
        "tenants.Organization", on_delete=models.CASCADE, related_name="audit_retention"
    )
    retention_days = models.PositiveIntegerField(null=True, blank=True)
    legal_hold = models.BooleanField(default=False)
    hold_reason = models.CharField(max_length=255, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = OrgScopedQuerySet.as_manager()

    def __str__(self) -> str:
        return f"retention of {self.organization_id}: {self.retention_days or 'forever'}"


class ExportFormat(models.TextChoices):
    CSV = "csv", "CSV"
    JSONL = "jsonl", "JSON Lines"


class AuditExport(models.Model):
    """One export an auditor downloaded: what was asked and, once streamed, what was sent.

    The manifest (count, first/last id, sha256 of the bytes sent, covering seal) is filled when
    the last byte has been produced; an export whose download was interrupted stays incomplete.
    """

    organization = models.ForeignKey(
        "tenants.Organization", on_delete=models.CASCADE, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_by_label = models.CharField(max_length=254, blank=True)
    format = models.CharField(max_length=8, choices=ExportFormat.choices)
    filters = models.JSONField(default=dict)
    max_event_id = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    event_count = models.PositiveBigIntegerField(null=True, blank=True)
    first_event_id = models.BigIntegerField(null=True, blank=True)
    last_event_id = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    manifest = models.JSONField(default=dict, blank=True)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"export #{self.pk} ({self.format})"

    @property
    def filename(self) -> str:
        return f"audit-{self.pk}.{self.format}"


class ToolCallRollup(models.Model):
    """Per org, server, tool and hour: counts and a latency histogram built from `tool.call` rows."""

    organization = models.ForeignKey(
        "tenants.Organization", on_delete=models.CASCADE, related_name="+"
    )
    hour = models.DateTimeField()
    server = models.CharField(max_length=100)
    tool = models.CharField(max_length=200)
    calls = models.PositiveBigIntegerField(default=0)
    successes = models.PositiveBigIntegerField(default=0)
    failures = models.PositiveBigIntegerField(default=0)
    denied = models.PositiveBigIntegerField(default=0)
    errors_by_class = models.JSONField(default=dict)
    latency_sum_ms = models.FloatField(default=0)
    latency_count = models.PositiveBigIntegerField(default=0)
    # Counts per bucket of audit.metrics.LATENCY_BUCKETS_MS (the last bucket is "above").
    latency_buckets = models.JSONField(default=list)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "hour", "server", "tool"], name="uniq_rollup_tool_hour"
            )
        ]
        indexes = [models.Index(fields=["organization", "hour"], name="rollup_org_hour")]

    def __str__(self) -> str:
        return f"{self.server}.{self.tool} @ {self.hour:%Y-%m-%d %H}:00"


class PrincipalRollup(models.Model):
    """Per org, agent, acting-for user and hour: who calls, who is denied, who is rate-limited."""

    organization = models.ForeignKey(
        "tenants.Organization", on_delete=models.CASCADE, related_name="+"
    )
    hour = models.DateTimeField()
    agent_id = models.BigIntegerField(null=True)
    agent_label = models.CharField(max_length=100, blank=True)
    on_behalf_of_id = models.BigIntegerField(null=True)
    on_behalf_of_label = models.CharField(max_length=254, blank=True)
    calls = models.PositiveBigIntegerField(default=0)
    failures = models.PositiveBigIntegerField(default=0)
    denied = models.PositiveBigIntegerField(default=0)
    rate_limited = models.PositiveBigIntegerField(default=0)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["organization", "hour"], name="rollup_principal_org_hour")]

    def __str__(self) -> str:
        return f"{self.agent_label or '-'} for {self.on_behalf_of_label or '-'}"


class RollupCursor(models.Model):
    """How far the rollup task has read the trail (one row per name; claimed with a row lock)."""

    name = models.CharField(max_length=32, unique=True)
    last_event_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} @ {self.last_event_id}"
