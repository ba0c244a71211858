"""AuditEvent: one immutable row per state change or gateway call.

Rows never reference other tables with database constraints: a trail must outlive the users,
agents and servers it speaks of, and deleting those must never need to touch (UPDATE) an audit
row. Ids are kept alongside readable labels captured at the time of the event.
"""

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
        ]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.action} {self.outcome}"

    def save(self, *args: object, **kwargs: object) -> None:
        # Append-only at the application level too (Postgres adds a trigger in the audit issue).
        if self.pk is not None and not self._state.adding:
            raise RuntimeError("Audit events are append-only and cannot be changed.")
        super().save(*args, **kwargs)
