"""On PostgreSQL, refuse UPDATE and DELETE on audit rows in the database itself.

The one exception is the retention purge (audit.retention.audit_purge): inside its transaction it
sets two transaction-local settings, `audit.purge_org` and `audit.purge_until_id`, and the
trigger then lets exactly that organization's rows with id <= that bound be deleted. Nothing can
ever UPDATE a row. The trigger stops the application and any casual SQL session; a database
superuser can still disable it, which is what the seal chain (`manage.py audit_verify`) detects.
SQLite has no such trigger: there the application simply never issues UPDATE or DELETE.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND coalesce(current_setting('audit.purge_org', true), '') <> ''
       AND OLD.organization_id IS NOT NULL
       AND OLD.organization_id::text = current_setting('audit.purge_org', true)
       AND OLD.id <= coalesce(nullif(current_setting('audit.purge_until_id', true), ''), '0')::bigint
    THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: % on audit_auditevent row % refused', TG_OP, OLD.id
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Only the retention purge may delete audit rows (see docs/audit.md).';
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS audit_event_append_only ON audit_auditevent;
CREATE TRIGGER audit_event_append_only
    BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS audit_event_append_only ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_event_append_only();
"""


def _run(schema_editor, sql):  # type: ignore[no-untyped-def]
    # A plain cursor without parameters: the SQL contains '%' placeholders of RAISE.
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(sql)


def forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    _run(schema_editor, FORWARD)


def backward(apps, schema_editor):  # type: ignore[no-untyped-def]
    _run(schema_editor, BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_seals_exports_retention_rollups")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
