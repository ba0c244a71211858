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
