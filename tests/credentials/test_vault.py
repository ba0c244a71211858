"""The vault: what a security reviewer expects of envelope encryption at rest."""

import base64
import os
import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from credentials import vault
from credentials.models import OrgDataKey
from credentials.vault import VaultError
from tenants.errors import DomainError

PURPOSE = "credentials.connection.access_token"


def _key(key_id: str) -> str:
    return f"{key_id}:{base64.urlsafe_b64encode(os.urandom(32)).decode()}"


@pytest.fixture(autouse=True)
def _fresh_vault_cache():
    vault.clear_cache()
    yield
    vault.clear_cache()


def test_round_trip_and_blob_carries_no_plaintext(org_a):
    row = uuid.uuid4()
    blob = vault.encrypt(org=org_a, purpose=PURPOSE, row_uid=row, plaintext="tok-Sécret-123")
    assert "tok-S" not in blob
    assert blob.startswith("v1:")
    assert (
        vault.decrypt(org=org_a, purpose=PURPOSE, row_uid=str(row), blob=blob) == "tok-Sécret-123"
    )
    # Two encryptions of the same secret differ (random nonce).
    assert blob != vault.encrypt(
        org=org_a, purpose=PURPOSE, row_uid=row, plaintext="tok-Sécret-123"
    )


def test_one_data_key_per_org_stored_only_wrapped(org_a, org_b):
    vault.encrypt(org=org_a, purpose=PURPOSE, row_uid=uuid.uuid4(), plaintext="a")
    vault.encrypt(org=org_a, purpose=PURPOSE, row_uid=uuid.uuid4(), plaintext="b")
    vault.encrypt(org=org_b, purpose=PURPOSE, row_uid=uuid.uuid4(), plaintext="c")
    assert OrgDataKey.objects.filter(organization=org_a).count() == 1
    assert OrgDataKey.objects.filter(organization=org_b).count() == 1
    a_key = OrgDataKey.objects.get(organization=org_a)
    assert a_key.master_key_id == vault.active_master_key().id
    # The stored form is nonce + 32-byte key + 16-byte tag: wrapped, not the raw key.
    assert len(base64.urlsafe_b64decode(a_key.wrapped_key + "==")) == 12 + 32 + 16


def test_tampered_blob_fails(org_a):
    row = uuid.uuid4()
    blob = vault.encrypt(org=org_a, purpose=PURPOSE, row_uid=row, plaintext="secret")
    head, sealed = blob.rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4)))
    raw[0] ^= 1
    tampered = head + ":" + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(VaultError, match="altered or copied"):
        vault.decrypt(org=org_a, purpose=PURPOSE, row_uid=row, blob=tampered)
    for garbage in ["", "plaintext-token", "v2:1:aa:bb", "v1:x:aa:bb", "v1:1:%%%:bb"]:
        with pytest.raises(VaultError):
            vault.decrypt(org=org_a, purpose=PURPOSE, row_uid=row, blob=garbage)


def test_blob_moved_to_other_row_field_or_org_fails(org_a, org_b):
    row = uuid.uuid4()
    blob = vault.encrypt(org=org_a, purpose=PURPOSE, row_uid=row, plaintext="secret")
    with pytest.raises(VaultError):
        vault.decrypt(org=org_a, purpose=PURPOSE, row_uid=uuid.uuid4(), blob=blob)
    with pytest.raises(VaultError):
        vault.decrypt(
            org=org_a, purpose="credentials.connection.refresh_token", row_uid=row, blob=blob
        )
    with pytest.raises(VaultError, match="another organization"):
        vault.decrypt(org=org_b, purpose=PURPOSE, row_uid=row, blob=blob)
    # Even if org B's data key id were forged into the blob, the AAD still binds org A's key.
    b_blob = vault.encrypt(org=org_b, purpose=PURPOSE, row_uid=row, plaintext="other")
    forged = ":".join([*b_blob.split(":")[:2], *blob.split(":")[2:]])
    with pytest.raises(VaultError):
        vault.decrypt(org=org_b, purpose=PURPOSE, row_uid=row, blob=forged)


def test_wrong_master_key_fails(org_a):
    first = _key("k1")
    row = uuid.uuid4()
    with override_settings(VAULT_MASTER_KEYS=[first]):
        blob = vault.encrypt(org=org_a, purpose=PURPOSE, row_uid=row, plaintext="secret")
    vault.clear_cache()  # a new process: the data key must be unwrapped again
    same_id_other_key = override_settings(VAULT_MASTER_KEYS=[_key("k1")])
    with same_id_other_key, pytest.raises(VaultError, match="does not unwrap"):
        vault.decrypt(org=org_a, purpose=PURPOSE, row_uid=row, blob=blob)
    vault.clear_cache()
    k1_missing = override_settings(VAULT_MASTER_KEYS=[_key("k2")])
    with k1_missing, pytest.raises(VaultError, match="not in the key ring"):
        vault.decrypt(org=org_a, purpose=PURPOSE, row_uid=row, blob=blob)


def test_several_master_keys_first_encrypts_all_decrypt(org_a, org_b):
    old, new = _key("old"), _key("new")
    row = uuid.uuid4()
    with override_settings(VAULT_MASTER_KEYS=[old]):
        blob = vault.encrypt(org=org_a, purpose=PURPOSE, row_uid=row, plaintext="under-old")
    vault.clear_cache()
    with override_settings(VAULT_MASTER_KEYS=[new, old]):
        assert vault.decrypt(org=org_a, purpose=PURPOSE, row_uid=row, blob=blob) == "under-old"
        vault.encrypt(org=org_b, purpose=PURPOSE, row_uid=row, plaintext="under-new")
    assert OrgDataKey.objects.get(organization=org_a).master_key_id == "old"
    assert OrgDataKey.objects.get(organization=org_b).master_key_id == "new"


def test_vault_error_is_a_domain_error_without_the_secret(org_a):
    blob = vault.encrypt(org=org_a, purpose=PURPOSE, row_uid=uuid.uuid4(), plaintext="hunter2")
    with pytest.raises(DomainError) as info:
        vault.decrypt(org=org_a, purpose=PURPOSE, row_uid=uuid.uuid4(), blob=blob)
    assert "hunter2" not in str(info.value) and blob not in str(info.value)
    assert info.value.status_code == 400


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["nocolon"], "id:base64key"),
        (["k1:" + base64.b64encode(b"short").decode()], "32 bytes"),
        (["k1:!!!not-base64!!!"], "base64|32 bytes"),
        ([_key("dup"), _key("dup")], "twice"),
    ],
)
def test_bad_key_ring_is_a_clear_configuration_error(entries, message):
    with (
        override_settings(VAULT_MASTER_KEYS=entries),
        pytest.raises(ImproperlyConfigured, match=message),
    ):
        vault.master_keys()


def test_production_without_master_keys_is_refused():
    with (
        override_settings(VAULT_MASTER_KEYS=[], VAULT_ALLOW_DEV_KEY=False),
        pytest.raises(ImproperlyConfigured, match="VAULT_MASTER_KEYS is required"),
    ):
        vault.master_keys()


def test_dev_key_in_debug_warns(caplog):
    vault._dev_warned = False
    with override_settings(VAULT_MASTER_KEYS=[], VAULT_ALLOW_DEV_KEY=True):
        ring = vault.master_keys()
    assert ring[0].id == vault.DEV_MASTER_KEY_ID
    assert "development master key" in caplog.text
    assert repr(ring[0]).count("key=") == 0


def test_new_master_key_command_prints_a_usable_entry(org_a):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("vault_new_master_key", "2026-01", stdout=out)
    entry = out.getvalue().strip()
    assert entry.startswith("2026-01:")
    with override_settings(VAULT_MASTER_KEYS=[entry]):
        row = uuid.uuid4()
        blob = vault.encrypt(org=org_a, purpose=PURPOSE, row_uid=row, plaintext="x")
        assert vault.decrypt(org=org_a, purpose=PURPOSE, row_uid=row, blob=blob) == "x"
