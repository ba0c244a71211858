"""Streamed exports: the file, its manifest, the offline verifier, and the export's own audit row."""

import csv
import io
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.models import AuditEvent, AuditExport
from audit.sealing import seal_chain
from tests.audit.factories import AuditEventFactory, ToolCallEventFactory

pytestmark = pytest.mark.django_db


def _export(client, org, fmt, **filters):
    response = client.get(f"/o/{org.slug}/audit/export/", {"format": fmt, **filters})
    assert response.status_code == 200, response.content
    body = b"".join(response.streaming_content)
    manifest = client.get(response["X-Audit-Manifest-URL"]).json()
    return body, manifest


def _old_trail(org, n=4):
    start = timezone.now() - timedelta(hours=1)
    return [
        ToolCallEventFactory(
            organization=org, occurred_at=start + timedelta(seconds=i), tool=f"t{i % 2}"
        )
        for i in range(n)
    ]


def test_jsonl_export_with_manifest_verifies_offline_and_against_seals(
    org_a, member_with_role, client_as, tmp_path: Path, capsys
) -> None:
    events = _old_trail(org_a)
    AuditEventFactory(organization=org_a, action="member.invited")  # filtered out below
    seal_chain(org_id=org_a.id)
    client = client_as(member_with_role("auditor"))
    body, manifest = _export(client, org_a, "jsonl", action="tool.call")
    lines = body.decode().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [e.id for e in events]
    assert manifest["event_count"] == 4 and manifest["filters"] == {"action": "tool.call"}
    assert manifest["first_event_id"] == events[0].id and manifest["last_event_id"] == events[-1].id
    assert manifest["covering_seal"]["sequence"] == 1

    export_file = tmp_path / manifest["file"]
    export_file.write_bytes(body)
    manifest_file = tmp_path / "manifest.json"
    manifest_file.write_text(json.dumps(manifest))
    call_command("audit_verify_export", str(manifest_file), str(export_file), "--db")
    assert "every row matches its seal" in capsys.readouterr().out
    # The stand-alone script needs nothing but Python.
    result = subprocess.run(
        [sys.executable, "audit/verify_export.py", str(manifest_file), str(export_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.startswith("OK: 4 rows")

    # One byte changed in the file: the verifier says so and exits non-zero.
    export_file.write_bytes(body.replace(b'"tool":"t0"', b'"tool":"t9"', 1))
    with pytest.raises(SystemExit):
        call_command("audit_verify_export", str(manifest_file), str(export_file))
    assert "sha256 differs" in capsys.readouterr().out


def test_edited_row_matching_a_forged_manifest_is_caught_by_the_seal_check(
    org_a, alice, client_as, tmp_path: Path, capsys
) -> None:
    _old_trail(org_a)
    seal_chain(org_id=org_a.id)
    body, manifest = _export(client_as(alice), org_a, "jsonl")
    forged = body.replace(b'"tool":"t0"', b'"tool":"t9"', 1)
    import hashlib

    manifest["sha256"] = hashlib.sha256(forged).hexdigest()  # the forger fixes the manifest too
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    (tmp_path / "e.jsonl").write_bytes(forged)
    with pytest.raises(SystemExit):
        call_command(
            "audit_verify_export", str(tmp_path / "m.json"), str(tmp_path / "e.jsonl"), "--db"
        )
    assert "differs from the row that was sealed" in capsys.readouterr().out


def test_csv_export_neutralizes_formulas(org_a, alice, client_as) -> None:
    AuditEventFactory(organization=org_a, target_label='=HYPERLINK("http://evil")')
    body, manifest = _export(client_as(alice), org_a, "csv")
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert rows[0][0] == "id" and len(rows) == 2
    label = rows[1][rows[0].index("target_label")]
    assert label.startswith("'=")
    assert manifest["event_count"] == 1


def test_export_is_audited_and_not_part_of_itself(org_a, alice, client_as) -> None:
    event = AuditEventFactory(organization=org_a)
    _, manifest = _export(client_as(alice), org_a, "jsonl")
    assert manifest["last_event_id"] == event.id
    audit_row = AuditEvent.objects.get(action="audit.exported")
    assert audit_row.actor_user_id == alice.id and audit_row.details["format"] == "jsonl"


def test_export_of_nothing_explains_and_records_nothing(
    org_a, alice, client_as, row_counts
) -> None:
    AuditEventFactory(organization=org_a, action="member.invited")
    before = row_counts()
    response = client_as(alice).get(
        f"/o/{org_a.slug}/audit/export/",
        {"format": "csv", "action": "nothing.matches"},
        follow=True,
    )
    assert b"nothing to export" in response.content
    assert row_counts() == before


def test_bad_format_and_bad_filters_are_refused(org_a, alice, client_as, row_counts) -> None:
    AuditEventFactory(organization=org_a)
    before = row_counts()
    client = client_as(alice)
    response = client.get(f"/o/{org_a.slug}/audit/export/", {"format": "xlsx"}, follow=True)
    assert b"Choose an export format" in response.content
    response = client.get(
        f"/o/{org_a.slug}/audit/export/", {"format": "csv", "since": "soon"}, follow=True
    )
    assert b"Fix the filters" in response.content
    assert row_counts() == before


def test_approver_can_read_but_not_export(org_a, member_with_role, client_as) -> None:
    approver = member_with_role("approver")
    AuditEventFactory(organization=org_a)
    client = client_as(approver)
    assert client.get(f"/o/{org_a.slug}/audit/").status_code == 200
    assert client.get(f"/o/{org_a.slug}/audit/export/", {"format": "csv"}).status_code == 403
    assert not AuditExport.objects.exists()


def test_interrupted_export_has_no_manifest(org_a, alice, client_as) -> None:
    AuditEventFactory(organization=org_a)
    client = client_as(alice)
    response = client.get(f"/o/{org_a.slug}/audit/export/", {"format": "jsonl"})
    # The client went away before reading the body: the stream never reached its end.
    manifest = client.get(response["X-Audit-Manifest-URL"])
    assert manifest.status_code == 409 and "did not finish" in manifest.json()["detail"]


def test_export_streams_under_asgi_too(org_a, alice) -> None:
    """Under ASGI (production: uvicorn) the export is an async stream, not a buffered list."""
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    events = [AuditEventFactory(organization=org_a) for _ in range(3)]
    client = AsyncClient()

    async def run() -> tuple[bytes, bool]:
        await client.aforce_login(alice)
        response = await client.get(f"/o/{org_a.slug}/audit/export/", {"format": "jsonl"})
        assert response.status_code == 200
        assert response.is_async
        return b"".join([chunk async for chunk in response.streaming_content]), response.is_async

    body, _ = async_to_sync(run)()
    assert [json.loads(line)["id"] for line in body.decode().splitlines()] == [e.id for e in events]
    assert AuditExport.objects.get().event_count == 3
