"""Policies and tool groups as stored rows, plus their change history.

The rows hold what an approver wrote, in the YAML format's own vocabulary (`spec` is the
policy's mapping as `export_document` writes it): the engine never reads these rows directly.
`policies.selectors.compiled_policy_for` turns them (with the approved catalog) into a
`CompiledPolicy` cached under `Organization.policy_version`, which every write here bumps in
the same transaction.
"""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from tenants.scoping import OrgOwned

policy_name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$",
    "Use up to 100 letters, digits, '-', '_' and '.', starting with a letter or digit.",
)
group_slug_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$",
    "Use up to 100 letters, digits, '-' and '_', starting with a letter or digit.",
)


class ToolGroup(OrgOwned):
    """A named set of tools across servers (refs like `tickets.get_ticket` or `tickets/list_*`).

    Policies allow or deny a group by slug, and the gateway serves each group as a toolset
    endpoint (`/mcp/<org>/<slug>/`).
    """

    organization = models.ForeignKey(
        "tenants.Organization", on_delete=models.CASCADE, related_name="tool_groups"
    )
    slug = models.CharField(max_length=100, validators=[group_slug_validator])
    name = models.CharField(max_length=100, blank=True)
    description = models.TextField(blank=True, max_length=4000)
    tools = models.JSONField(default=list, blank=True)
    revision = models.PositiveIntegerField(default=1)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "slug"], name="uniq_toolgroup_org_slug")
        ]
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name or self.slug

    def snapshot(self) -> dict:
        """What the history and the audit trail keep of this group."""
        return {
            "slug": self.slug,
            "name": self.name,
            "description": self.description,
            "tools": list(self.tools),
        }


class Policy(OrgOwned):
    """One policy: who (subjects) may call what (allow / deny), with which arguments, limits,
    overrides and redaction. `spec` is the normalized mapping, `source_yaml` its YAML export
    (what the editor shows and what `policy_export` prints)."""

    organization = models.ForeignKey(
        "tenants.Organization", on_delete=models.CASCADE, related_name="policies"
    )
    name = models.CharField(max_length=100, validators=[policy_name_validator])
    description = models.TextField(blank=True)
    # A disabled policy is kept (and exported) but not compiled: it grants and denies nothing.
    enabled = models.BooleanField(default=True)
    spec = models.JSONField(default=dict)
    source_yaml = models.TextField(blank=True)
    revision = models.PositiveIntegerField(default=1)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="uniq_policy_org_name")
        ]
        ordering = ["name"]
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return self.name

    def snapshot(self) -> dict:
        """What the history and the audit trail keep of this policy."""
        return {"name": self.name, "enabled": self.enabled, "spec": self.spec}


class RevisionAction(models.TextChoices):
    CREATED = "created", "Created"
    UPDATED = "updated", "Updated"
    DELETED = "deleted", "Deleted"


class RevisionSource(models.TextChoices):
    FORM = "form", "Form"
    YAML = "yaml", "YAML apply"
    API = "api", "API"
    CLI = "cli", "Command line"
    DEMO = "demo", "Demo seed"


class RevisionKind(models.TextChoices):
    POLICY = "policy", "Policy"
    TOOL_GROUP = "tool_group", "Tool group"


class PolicyRevision(OrgOwned):
    """One change to a policy or a tool group: before and after, who, when, through what.

    Rows outlive what they describe (the foreign keys are set to NULL on delete; the name
    stays), so the history of a deleted policy can still be read.
    """

    organization = models.ForeignKey(
        "tenants.Organization", on_delete=models.CASCADE, related_name="policy_revisions"
    )
    policy = models.ForeignKey(
        Policy, on_delete=models.SET_NULL, null=True, blank=True, related_name="revisions"
    )
    tool_group = models.ForeignKey(
        ToolGroup, on_delete=models.SET_NULL, null=True, blank=True, related_name="revisions"
    )
    kind = models.CharField(max_length=10, choices=RevisionKind.choices)
    object_name = models.CharField(max_length=100)
    revision = models.PositiveIntegerField()
    action = models.CharField(max_length=8, choices=RevisionAction.choices)
    source = models.CharField(max_length=8, choices=RevisionSource.choices)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    policy_version = models.PositiveBigIntegerField(default=0)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["organization", "-id"], name="policyrev_org_id"),
        ]

    def __str__(self) -> str:
        return f"{self.object_name} r{self.revision} {self.action}"
