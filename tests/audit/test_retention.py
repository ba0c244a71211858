"""Retention and legal hold: purges remove whole sealed ranges, are sealed and audited, and a
held organization is never purged."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent, AuditSeal
from audit.retention import audit_purge, retention_set
from audit.sealing import seal_chain, verify_chain
from audit.tasks import audit_purge_task
from tests.audit.factories import AuditEventFactory

pytestmark = pytest.mark.django_db


def _history(org):
    now = timezone.now()
    old = [
        AuditEventFactory(organization=org, occurred_at=now - timedelta(days=100 - i))
        for i in range(3)
    ]
    seal_chain(org_id=org.id)  # seal 1: the old rows
    recent = [AuditEventFactory(organization=org, occurred_at=now - timedelta(days=5))]
    seal_chain(org_id=org.id)  # seal 2: a recent row
    return old, recent


def test_purge_removes_old_sealed_rows_and_the_chain_still_verifies(org_a, alice) -> None:
    old, recent = _history(org_a)
    retention_set(org=org_a, actor=alice, retention_days=30, legal_hold=False)
    assert audit_purge(org_id=org_a.id) == 3
    assert not AuditEvent.objects.filter(id__in=[e.id for e in old]).exists()
    assert AuditEvent.objects.filter(id=recent[0].id).exists()
    purge_seal = AuditSeal.objects.get(chain=f"org:{org_a.id}", kind="purge")
    assert purge_seal.note["removed_first_event_id"] == old[0].id
    assert purge_seal.note["removed_last_event_id"] == old[-1].id
    audited = AuditEvent.objects.get(action="audit.purged")
    assert audited.details["removed_count"] == 3
    seal_chain(org_id=org_a.id)  # the purge's own audit row gets sealed... once past the lag
    report = verify_chain(org_id=org_a.id)
    assert report.ok, report.problems
    assert audit_purge(org_id=org_a.id) == 0  # idempotent


def test_legal_hold_stops_every_purge(org_a, alice) -> None:
    old, _ = _history(org_a)
    retention_set(org=org_a, actor=alice, retention_days=30, legal_hold=True, hold_reason="Case 42")
    assert audit_purge_task(org_a.id) == 0
    assert AuditEvent.objects.filter(id__in=[e.id for e in old]).count() == 3
    assert not AuditSeal.objects.filter(kind="purge").exists()


def test_unsealed_rows_are_never_purged(org_a, alice) -> None:
    old = AuditEventFactory(organization=org_a, occurred_at=timezone.now() - timedelta(days=200))
    retention_set(org=org_a, actor=alice, retention_days=30, legal_hold=False)
    assert audit_purge(org_id=org_a.id) == 0
    assert AuditEvent.objects.filter(id=old.id).exists()


def test_no_retention_keeps_everything(org_a) -> None:
    old, _ = _history(org_a)
    assert audit_purge_task() == 0
    assert AuditEvent.objects.filter(id=old[0].id).exists()


def test_other_orgs_are_untouched(org_a, org_b, alice) -> None:
    _history(org_a)
    theirs, _ = _history(org_b)
    retention_set(org=org_a, actor=alice, retention_days=30, legal_hold=False)
    audit_purge_task()
    assert AuditEvent.objects.filter(id__in=[e.id for e in theirs]).count() == 3


def test_owner_sets_retention_in_the_ui_and_it_is_audited(org_a, alice, client_as) -> None:
    client = client_as(alice)
    response = client.post(
        f"/o/{org_a.slug}/audit/retention/", {"retention_days": "365", "hold_reason": ""}
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="audit.retention_changed")
    assert event.details["after"]["retention_days"] == 365


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"retention_days": "3"}, b"greater than or equal to 30"),
        ({"retention_days": "abc"}, b"Enter a whole number"),
        ({"retention_days": "90", "legal_hold": "on", "hold_reason": ""}, b"Say why"),
    ],
)
def test_bad_retention_input_changes_nothing(
    org_a, alice, client_as, row_counts, data, message
) -> None:
    before = row_counts()
    response = client_as(alice).post(f"/o/{org_a.slug}/audit/retention/", data)
    assert response.status_code == 200 and message in response.content
    assert row_counts() == before
