"""The vault: envelope encryption of secrets at rest (AES-256-GCM, `cryptography`).

    blob = encrypt(org=org, purpose="catalog.server.static_headers", row_uid=server.uid,
                   plaintext=json.dumps(headers))
    headers = json.loads(decrypt(org=org, purpose="catalog.server.static_headers",
                                 row_uid=server.uid, blob=blob))

How it works, and why:
- Each organization has a data key (`OrgDataKey`), random 256 bits, stored only *wrapped* by a
  master key of the key ring (`VAULT_MASTER_KEYS` / `VAULT_MASTER_KEYS_FILE`: `id:base64key`
  entries; the first wraps new keys, all unwrap). Master keys never touch the database, so a
  database dump alone decrypts nothing.
- A blob is `v1:<data key id>.<key uid tag>:<nonce>:<ciphertext+tag>` (base64url). The
  associated data binds it to the organization, the purpose (table and field) and the row's
  uid, so a blob copied to another row, field or organization fails instead of decrypting.
- Unwrapped data keys are cached in process memory by (id, uid tag): a data key never changes
  (rotation re-wraps it, or retires it in favour of a new one), so the cache cannot go stale,
  and the gateway's hot path decrypts without a query after the first use.
- The active data key for encryption is read from the database on every `encrypt` (writes are
  rare), so a rotation in another process is honoured at once.

Errors are `VaultError` with a message that names what to fix and never the secret.
"""

import base64
import hashlib
import logging
import os
import re
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction

from credentials.errors import VaultError

__all__ = [
    "EncryptedField",
    "MasterKey",
    "VaultError",
    "active_master_key",
    "blob_data_key_id",
    "clear_cache",
    "decrypt",
    "encrypt",
    "encrypted_fields",
    "master_keys",
    "register_encrypted_field",
]

logger = logging.getLogger(__name__)

BLOB_VERSION = "v1"
_NONCE_BYTES = 12
_KEY_BYTES = 32
_KEY_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
DEV_MASTER_KEY_ID = "dev-from-secret-key"


# --- The key ring ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MasterKey:
    id: str
    key: bytes

    def __repr__(self) -> str:  # never print key material
        return f"MasterKey(id={self.id!r})"


_ring_cache: tuple[tuple[Any, ...], tuple[MasterKey, ...]] | None = None
_dev_warned = False


def _parse_ring(entries: list[str] | tuple[str, ...] | str) -> tuple[MasterKey, ...]:
    if isinstance(entries, str):
        entries = [e for e in re.split(r"[\s,]+", entries) if e]
    ring: list[MasterKey] = []
    seen: set[str] = set()
    for position, entry in enumerate(entries, start=1):
        key_id, sep, encoded = entry.strip().partition(":")
        if not sep or not _KEY_ID_RE.match(key_id):
            raise ImproperlyConfigured(
                f"VAULT_MASTER_KEYS entry #{position} must look like 'id:base64key' with an id of "
                "letters, digits, '.', '_' or '-' (generate one with `manage.py vault_new_master_key`)."
            )
        try:
            key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(
                f"VAULT_MASTER_KEYS entry {key_id!r} is not valid base64."
            ) from exc
        if len(key) != _KEY_BYTES:
            raise ImproperlyConfigured(
                f"VAULT_MASTER_KEYS entry {key_id!r} must decode to 32 bytes (AES-256), "
                f"not {len(key)}."
            )
        if key_id in seen:
            raise ImproperlyConfigured(f"VAULT_MASTER_KEYS lists the id {key_id!r} twice.")
        seen.add(key_id)
        ring.append(MasterKey(id=key_id, key=key))
    return tuple(ring)


def _dev_master_key() -> MasterKey:
    """A development master key derived from SECRET_KEY: only in DEBUG / trial mode."""
    global _dev_warned
    if not _dev_warned:
        _dev_warned = True
        logger.warning(
            "VAULT: no VAULT_MASTER_KEYS configured; using a development master key derived from "
            "SECRET_KEY. Secrets are NOT protected against anyone who knows SECRET_KEY. Set "
            "VAULT_MASTER_KEYS (or VAULT_MASTER_KEYS_FILE) before storing real credentials."
        )
    derived = HKDF(
        algorithm=SHA256(), length=_KEY_BYTES, salt=None, info=b"mcp-gateway vault dev master key"
    ).derive(settings.SECRET_KEY.encode("utf-8"))
    return MasterKey(id=DEV_MASTER_KEY_ID, key=derived)


def _dev_key_allowed() -> bool:
    return bool(getattr(settings, "VAULT_ALLOW_DEV_KEY", False))


def master_keys() -> tuple[MasterKey, ...]:
    """The key ring, first (encrypting) key first. Re-parsed when the setting changes."""
    global _ring_cache
    configured = getattr(settings, "VAULT_MASTER_KEYS", None) or ()
    cache_key = (tuple(configured) if not isinstance(configured, str) else (configured,),)
    if not configured:
        cache_key = (("__dev__", settings.SECRET_KEY, _dev_key_allowed()),)
    if _ring_cache is not None and _ring_cache[0] == cache_key:
        return _ring_cache[1]
    if configured:
        ring = _parse_ring(configured)
    elif _dev_key_allowed():
        ring = (_dev_master_key(),)
    else:
        raise ImproperlyConfigured(
            "VAULT_MASTER_KEYS is required when DEBUG is off: set VAULT_MASTER_KEYS or "
            "VAULT_MASTER_KEYS_FILE to 'id:base64key' (32 random bytes; generate with "
            "`manage.py vault_new_master_key`)."
        )
    if not ring:
        raise ImproperlyConfigured("VAULT_MASTER_KEYS is empty.")
    _ring_cache = (cache_key, ring)
    return ring


def active_master_key() -> MasterKey:
    return master_keys()[0]


def _master_key(key_id: str) -> MasterKey:
    for mk in master_keys():
        if mk.id == key_id:
            return mk
    raise VaultError(
        f"The master key {key_id!r} that wraps this organization's data key is not in the key "
        "ring. Add it back to VAULT_MASTER_KEYS (keep old keys until `vault_rotate` finished)."
    )


def new_master_key_entry(key_id: str) -> str:
    """A fresh `id:base64key` entry for VAULT_MASTER_KEYS."""
    if not _KEY_ID_RE.match(key_id):
        raise ValueError("key id: letters, digits, '.', '_' or '-' only")
    return f"{key_id}:{base64.urlsafe_b64encode(os.urandom(_KEY_BYTES)).decode().rstrip('=')}"


# --- Data keys -------------------------------------------------------------------------------

# (data key id, uid tag) -> (organization id, data key bytes). The tag (8 hex digits of the key
# row's random uid) travels in every blob, so a cached key can never be confused with another
# row that reused the id (SQLite reuses ids after a rollback): the cache cannot go stale.
_data_keys: dict[tuple[int, str], tuple[int, bytes]] = {}
_lock = threading.Lock()


def clear_cache() -> None:
    """Forget unwrapped data keys and the parsed key ring (a fresh process, in effect)."""
    global _ring_cache
    with _lock:
        _data_keys.clear()
        _ring_cache = None


def _org_id(org: Any) -> int:
    org_id = org if isinstance(org, int) else getattr(org, "pk", None)
    if not isinstance(org_id, int):
        raise VaultError("The vault needs a saved organization.")
    return org_id


def key_tag(key_uid: uuid.UUID | str) -> str:
    return uuid.UUID(str(key_uid)).hex[:8]


def _wrap_aad(org_id: int, key_uid: uuid.UUID | str) -> bytes:
    return f"mgw-datakey|v1|org={org_id}|key={key_uid}".encode()


def wrap_data_key(*, org_id: int, key_uid: uuid.UUID | str, data_key: bytes, mk: MasterKey) -> str:
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(mk.key).encrypt(nonce, data_key, _wrap_aad(org_id, key_uid))
    return _b64e(nonce + sealed)


def unwrap_data_key(row: Any) -> bytes:
    """The plaintext data key of an OrgDataKey row (raises VaultError)."""
    mk = _master_key(row.master_key_id)
    raw = _b64d(row.wrapped_key)
    try:
        return AESGCM(mk.key).decrypt(
            raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _wrap_aad(row.organization_id, row.uid)
        )
    except (InvalidTag, ValueError) as exc:
        raise VaultError(
            f"The data key {row.pk} does not unwrap with master key {mk.id!r}: the key ring "
            "holds a different key under that id, or the wrapped key was altered."
        ) from exc


def data_key_for_row(row: Any) -> bytes:
    """The plaintext data key of an OrgDataKey row, through the cache."""
    ref = (row.pk, key_tag(row.uid))
    cached = _data_keys.get(ref)
    if cached is not None:
        return cached[1]
    key = unwrap_data_key(row)
    with _lock:
        _data_keys[ref] = (row.organization_id, key)
    return key


def _data_key_by_ref(key_id: int, tag: str) -> tuple[int, bytes]:
    cached = _data_keys.get((key_id, tag))
    if cached is not None:
        return cached
    from credentials.models import OrgDataKey

    row = OrgDataKey.objects.filter(pk=key_id).first()
    if row is None or key_tag(row.uid) != tag:
        raise VaultError(f"The data key {key_id} named by this secret does not exist.")
    return row.organization_id, data_key_for_row(row)


def create_data_key(*, org_id: int, active: bool = True) -> Any:
    """A new random data key for the organization, wrapped by the active master key."""
    from credentials.models import OrgDataKey

    mk = active_master_key()
    data_key = AESGCM.generate_key(bit_length=256)
    row = OrgDataKey(organization_id=org_id, master_key_id=mk.id, active=active)
    row.wrapped_key = wrap_data_key(org_id=org_id, key_uid=row.uid, data_key=data_key, mk=mk)
    row.save()
    with _lock:
        _data_keys[(row.pk, key_tag(row.uid))] = (org_id, data_key)
    return row


def _active_data_key(org_id: int) -> Any:
    from credentials.models import OrgDataKey

    row = OrgDataKey.objects.filter(organization_id=org_id, active=True).first()
    if row is None:
        try:
            # A savepoint, so that losing the race to another process does not break the
            # caller's transaction; the loser reads the winner's key.
            with transaction.atomic():
                row = create_data_key(org_id=org_id)
        except IntegrityError:
            row = OrgDataKey.objects.get(organization_id=org_id, active=True)
    return row


# --- Blobs -----------------------------------------------------------------------------------


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _b64d(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise VaultError("This secret is not a valid vault blob (bad encoding).") from exc


def _blob_aad(org_id: int, purpose: str, row_uid: str | uuid.UUID, key_id: int, tag: str) -> bytes:
    return (
        f"mgw-secret|{BLOB_VERSION}|org={org_id}|purpose={purpose}|row={row_uid}|key={key_id}.{tag}"
    ).encode()


def _check_binding(purpose: str, row_uid: str | uuid.UUID) -> None:
    if not purpose or "|" in purpose:
        raise VaultError("A vault purpose names the table and field, e.g. 'app.model.field'.")
    if row_uid is None or str(row_uid) == "":
        raise VaultError("A vault secret must be bound to its row's uid.")


def encrypt(*, org: Any, purpose: str, row_uid: str | uuid.UUID, plaintext: str) -> str:
    """Encrypt `plaintext` for one field (`purpose`) of one row (`row_uid`) of `org`."""
    _check_binding(purpose, row_uid)
    if not isinstance(plaintext, str):
        raise VaultError("The vault encrypts text; serialize the value first.")
    org_id = _org_id(org)
    key_row = _active_data_key(org_id)
    return encrypt_with_key(
        org_id=org_id, purpose=purpose, row_uid=row_uid, plaintext=plaintext, key_row=key_row
    )


def encrypt_with_key(
    *, org_id: int, purpose: str, row_uid: str | uuid.UUID, plaintext: str, key_row: Any
) -> str:
    """Encrypt under a given data key row of `org_id` (the rotation's bulk path)."""
    if key_row.organization_id != org_id:
        raise VaultError("A data key of another organization cannot encrypt here.")
    key = data_key_for_row(key_row)
    tag = key_tag(key_row.uid)
    nonce = os.urandom(_NONCE_BYTES)
    aad = _blob_aad(org_id, purpose, row_uid, key_row.pk, tag)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode("utf-8"), aad)
    return f"{BLOB_VERSION}:{key_row.pk}.{tag}:{_b64e(nonce)}:{_b64e(sealed)}"


_KEY_REF_RE = re.compile(r"^([0-9]{1,19})\.([0-9a-f]{8})$")


def _parse_blob(blob: str) -> tuple[int, str, bytes, bytes]:
    if not isinstance(blob, str) or not blob:
        raise VaultError("There is no stored secret to decrypt.")
    parts = blob.split(":")
    ref = _KEY_REF_RE.match(parts[1]) if len(parts) == 4 else None
    if parts[0] != BLOB_VERSION or ref is None:
        raise VaultError("This secret is not a vault blob this version understands.")
    nonce = _b64d(parts[2])
    if len(nonce) != _NONCE_BYTES:
        raise VaultError("This secret is not a valid vault blob (bad nonce).")
    return int(ref.group(1)), ref.group(2), nonce, _b64d(parts[3])


def blob_data_key_id(blob: str) -> int:
    """The id of the data key a blob was encrypted under (no decryption)."""
    return _parse_blob(blob)[0]


def decrypt(*, org: Any, purpose: str, row_uid: str | uuid.UUID, blob: str) -> str:
    """Decrypt a blob made by `encrypt` for exactly this org, purpose and row (else VaultError)."""
    _check_binding(purpose, row_uid)
    org_id = _org_id(org)
    key_id, tag, nonce, sealed = _parse_blob(blob)
    key_org_id, key = _data_key_by_ref(key_id, tag)
    if key_org_id != org_id:
        raise VaultError("This secret belongs to another organization and cannot be read here.")
    try:
        plain = AESGCM(key).decrypt(nonce, sealed, _blob_aad(org_id, purpose, row_uid, key_id, tag))
    except InvalidTag as exc:
        raise VaultError(
            "This secret does not decrypt: it was altered or copied from another row or field. "
            "Enter the secret again."
        ) from exc
    return plain.decode("utf-8")


def fingerprint(plaintext: str) -> str:
    """A short non-reversible tag for telling secrets apart without showing them (8 hex digits
    of their SHA-256). Never a part of the secret itself."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()[:8]


# --- Registry of encrypted fields (for rotation) --------------------------------------------


@dataclass(frozen=True)
class EncryptedField:
    model_label: str  # "catalog.Server"
    field: str  # "static_headers_blob"
    purpose: str  # "catalog.server.static_headers"
    uid_field: str = "uid"
    org_field: str = "organization"


_registry: dict[tuple[str, str], EncryptedField] = {}


def register_encrypted_field(
    *,
    model_label: str,
    field: str,
    purpose: str,
    uid_field: str = "uid",
    org_field: str = "organization",
) -> None:
    """Declare a text field holding vault blobs, so `vault_rotate --reencrypt` re-encrypts it.
    Call from your AppConfig.ready(). Empty values ("" or NULL) are skipped."""
    entry = EncryptedField(model_label, field, purpose, uid_field, org_field)
    _registry[(model_label, field)] = entry


def encrypted_fields() -> list[EncryptedField]:
    return sorted(_registry.values(), key=lambda e: (e.model_label, e.field))
