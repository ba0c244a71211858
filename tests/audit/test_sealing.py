"""Tamper evidence: seals chain the trail; audit_verify names the row that was changed, removed or
inserted out of order."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from audit.models import AuditSeal
from audit.sealing import seal_chain, verify_chain
from tests.audit.factories import AuditEventFactory

pytestmark = pytest.mark.django_db


def _trail(org, n=5):
    """n events, old enough to be sealed, one minute apart."""
    start = timezone.now() - timedelta(hours=2)
    return [
        AuditEventFactory(organization=org, occurred_at=start + timedelta(minutes=i))
        for i in range(n)
    ]


def _raw(sql: str, params: list) -> None:
    # Tampering the way an attacker with database access would: plain SQL. On Postgres the
    # trigger must be bypassed first (a superuser can), which is what the seals are for.
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")


def test_untouched_trail_verifies(org_a) -> None:
    _trail(org_a, 7)
    assert seal_chain(org_id=org_a.id) == 7
    report = verify_chain(org_id=org_a.id)
    assert report.ok, report.problems
    assert report.rows_checked == 7 and report.unsealed_rows == 0


def test_recent_rows_wait_for_the_lag(org_a) -> None:
    _trail(org_a, 2)
    AuditEventFactory(
        organization=org_a
    )  # just now: a slower transaction may still commit before it
    assert seal_chain(org_id=org_a.id) == 2
    assert verify_chain(org_id=org_a.id).unsealed_rows == 1


def test_sealing_is_idempotent_and_chains(org_a, settings) -> None:
    settings.AUDIT_SEAL_BATCH_SIZE = 3
    _trail(org_a, 7)
    seal_chain(org_id=org_a.id)
    assert seal_chain(org_id=org_a.id) == 0
    seals = list(AuditSeal.objects.filter(chain=f"org:{org_a.id}").order_by("sequence"))
    assert [s.event_count for s in seals] == [3, 3, 1]
    assert seals[1].previous_hash == seals[0].hash and seals[2].previous_hash == seals[1].hash


def test_changed_details_are_detected(org_a) -> None:
    events = _trail(org_a)
    seal_chain(org_id=org_a.id)
    _raw(
        "UPDATE audit_auditevent SET details = %s WHERE id = %s",
        ['{"role": "owner"}', events[2].id],
    )
    report = verify_chain(org_id=org_a.id)
    assert [(p.kind, p.event_id) for p in report.problems] == [("changed", events[2].id)]


def test_removed_row_is_detected(org_a) -> None:
    events = _trail(org_a)
    seal_chain(org_id=org_a.id)
    _raw("DELETE FROM audit_auditevent WHERE id = %s", [events[3].id])
    report = verify_chain(org_id=org_a.id)
    assert [(p.kind, p.event_id) for p in report.problems] == [("removed", events[3].id)]


def test_row_inserted_with_an_old_time_is_detected(org_a) -> None:
    events = _trail(org_a)
    seal_chain(org_id=org_a.id)
    forged = AuditEventFactory(
        organization=org_a, occurred_at=events[0].occurred_at - timedelta(days=3)
    )
    report = verify_chain(org_id=org_a.id)
    assert [(p.kind, p.event_id) for p in report.problems] == [("out_of_order", forged.id)]


def test_row_inserted_into_a_sealed_range_is_detected(org_a) -> None:
    events = _trail(org_a, 3)
    # Leave a gap in the ids (rolled-back transactions do that), then seal across it.
    last = AuditEventFactory(
        organization=org_a, id=events[-1].id + 10, occurred_at=events[-1].occurred_at
    )
    seal_chain(org_id=org_a.id)
    forged = AuditEventFactory(
        organization=org_a, id=events[-1].id + 5, occurred_at=events[-1].occurred_at
    )
    report = verify_chain(org_id=org_a.id)
    assert [(p.kind, p.event_id) for p in report.problems] == [("inserted", forged.id)]
    assert last.id > forged.id


def test_edited_seal_is_detected(org_a) -> None:
    _trail(org_a)
    seal_chain(org_id=org_a.id)
    AuditSeal.objects.filter(chain=f"org:{org_a.id}").update(event_count=4)
    assert [p.kind for p in verify_chain(org_id=org_a.id).problems] == ["seal_broken"]


def test_other_orgs_chain_is_unaffected(org_a, org_b) -> None:
    events = _trail(org_a)
    _trail(org_b)
    seal_chain(org_id=org_a.id)
    seal_chain(org_id=org_b.id)
    _raw("DELETE FROM audit_auditevent WHERE id = %s", [events[0].id])
    assert not verify_chain(org_id=org_a.id).ok
    assert verify_chain(org_id=org_b.id).ok


def test_audit_verify_command_reports_and_exits_nonzero(org_a, capsys) -> None:
    events = _trail(org_a)
    call_command("audit_seal")
    call_command("audit_verify", "--org", "acme")
    assert "OK   acme" in capsys.readouterr().out
    _raw(
        "UPDATE audit_auditevent SET actor_label = %s WHERE id = %s",
        ["mallory@evil.test", events[4].id],
    )
    with pytest.raises(SystemExit) as exc:
        call_command("audit_verify", "--org", "acme")
    assert exc.value.code == 1
    out = capsys.readouterr().out
    assert f"[changed] row {events[4].id}" in out


def test_seal_task_seals_every_org_and_system_events(org_a, org_b) -> None:
    from audit.tasks import audit_seal_task

    _trail(org_a, 2)
    _trail(org_b, 3)
    AuditEventFactory(organization=None, occurred_at=timezone.now() - timedelta(hours=1))
    assert audit_seal_task() == 6
    assert audit_seal_task() == 0
    assert verify_chain(org_id=None).rows_checked == 1
