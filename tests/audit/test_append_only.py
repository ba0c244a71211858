"""On Postgres the database itself refuses UPDATE and DELETE of audit rows (ORM and raw SQL)."""

import pytest
from django.db import DatabaseError, connection, transaction

from audit.models import AuditEvent
from tests.audit.factories import AuditEventFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.postgres,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="the append-only trigger exists on PostgreSQL only",
    ),
]


def _refused(fn) -> None:
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        fn()


def test_orm_update_and_delete_are_refused(org_a) -> None:
    event = AuditEventFactory(organization=org_a)
    _refused(lambda: AuditEvent.objects.filter(pk=event.pk).update(action="nothing.happened"))
    _refused(lambda: AuditEvent.objects.filter(pk=event.pk).delete())
    assert AuditEvent.objects.get(pk=event.pk).action == "member.invited"


def test_raw_sql_update_and_delete_are_refused(org_a) -> None:
    event = AuditEventFactory(organization=org_a)

    def raw(sql: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql, [event.pk])

    _refused(lambda: raw("UPDATE audit_auditevent SET details = '{}' WHERE id = %s"))
    _refused(lambda: raw("DELETE FROM audit_auditevent WHERE id = %s"))
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_purge_setting_only_opens_its_own_org_and_range(org_a, org_b) -> None:
    mine = AuditEventFactory(organization=org_a)
    other = AuditEventFactory(organization=org_b)

    def purge(org_id: int, until: int, target: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('audit.purge_org', %s, true), set_config('audit.purge_until_id', %s, true)",
                [str(org_id), str(until)],
            )
            cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [target])

    _refused(lambda: purge(org_a.id, other.id, other.id))  # another org's row
    _refused(lambda: purge(org_a.id, mine.id - 1, mine.id))  # beyond the bound
    with transaction.atomic():
        purge(org_a.id, mine.id, mine.id)
    assert not AuditEvent.objects.filter(pk=mine.pk).exists()
    # The setting was transaction-local: a later DELETE is refused again.
    _refused(lambda: AuditEvent.objects.filter(pk=other.pk).delete())
