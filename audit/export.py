"""Streamed exports (CSV and JSON Lines) with an integrity manifest.

`audit_export_start` fixes the snapshot (the highest matching id at the time of the request),
records the export in the trail, and returns the AuditExport; `export_chunks` then streams the
rows in id order with `.iterator(chunk_size=...)` (memory stays flat whatever the size), hashing
the bytes as they go, and writes the manifest when the last byte is out.

A JSON Lines line is exactly the canonical JSON the sealer hashes, so `audit_verify_export` can
check an export against the seal chain row by row. CSV cells that a spreadsheet would run as a
formula (starting with = + - @ or a tab / carriage return) are prefixed with an apostrophe.
"""

import csv
import hashlib
import io
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.errors import AuditError
from audit.filters import AuditQuery
from audit.models import AuditEvent, AuditExport, ExportFormat
from audit.sealing import CANONICAL_FIELDS, canonical_dict, canonical_json
from audit.selectors import bounded_query, covering_seal, latest_seal
from audit.services import record

MANIFEST_FORMAT = "mcp-gateway-audit-export/1"
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_FLUSH_BYTES = 64 * 1024


def audit_export_start(*, org: Any, actor: Any, fmt: str, query: AuditQuery) -> AuditExport:
    """Fix what will be exported and audit the export. Raises AuditError when nothing matches."""
    if fmt not in ExportFormat.values:
        raise AuditError("Choose an export format: csv or jsonl.", field="format")
    base = query.apply(AuditEvent.objects.for_org(org))
    with bounded_query():
        max_id = base.order_by("-id").values_list("id", flat=True).first()
    if max_id is None:
        raise AuditError("No events match these filters, so there is nothing to export.")
    with transaction.atomic():
        export = AuditExport.objects.create(
            organization=org,
            created_by=actor,
            created_by_label=str(actor)[:254] if actor is not None else "",
            format=fmt,
            filters=query.as_params(),
            max_event_id=max_id,
        )
        record(
            org=org,
            action="audit.exported",
            actor=actor,
            target=export,
            details={"format": fmt, "filters": query.as_params(), "max_event_id": max_id},
        )
    return export


def _csv_cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        value = json.dumps(value, sort_keys=True, ensure_ascii=False)
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return "" if value is None else value


def _rows(export: AuditExport, query: AuditQuery) -> Iterator[dict[str, Any]]:
    qs = (
        query.apply(AuditEvent.objects.for_org(export.organization_id))
        .filter(id__lte=export.max_event_id)
        .order_by("id")
        .values(*CANONICAL_FIELDS)
    )
    yield from qs.iterator(chunk_size=settings.AUDIT_EXPORT_CHUNK_SIZE)


def export_chunks(export: AuditExport, query: AuditQuery) -> Iterator[bytes]:
    """The file's bytes in ~64 KiB blocks; writes the manifest once the last block is produced."""
    digest = hashlib.sha256()
    count = 0
    first_id = last_id = None
    buffer = io.StringIO()
    writer = (
        csv.writer(buffer, lineterminator="\r\n") if export.format == ExportFormat.CSV else None
    )
    if writer is not None:
        writer.writerow(CANONICAL_FIELDS)

    def take() -> bytes:
        data = buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        digest.update(data)
        return data

    for row in _rows(export, query):
        if writer is not None:
            canonical = canonical_dict(row)
            writer.writerow([_csv_cell(canonical[name]) for name in CANONICAL_FIELDS])
        else:
            buffer.write(canonical_json(row))
            buffer.write("\n")
        count += 1
        first_id = first_id if first_id is not None else row["id"]
        last_id = row["id"]
        if buffer.tell() >= _FLUSH_BYTES:
            yield take()
    tail = take()
    if tail:
        yield tail
    _complete(export, count=count, first_id=first_id, last_id=last_id, sha256=digest.hexdigest())


def _complete(
    export: AuditExport, *, count: int, first_id: int | None, last_id: int | None, sha256: str
) -> None:
    seal = covering_seal(org_id=export.organization_id, last_event_id=last_id) if last_id else None
    newest = latest_seal(org_id=export.organization_id)
    manifest = {
        "manifest_format": MANIFEST_FORMAT,
        "export_id": export.pk,
        "organization": export.organization.slug,
        "file": export.filename,
        "file_format": export.format,
        "created_at": export.created_at.isoformat(),
        "created_by": export.created_by_label,
        "filters": export.filters,
        "event_count": count,
        "first_event_id": first_id,
        "last_event_id": last_id,
        "sha256": sha256,
        "covering_seal": (
            {"sequence": seal.sequence, "hash": seal.hash, "last_event_id": seal.last_event_id}
            if seal
            else None
        ),
        "latest_seal": (
            {
                "sequence": newest.sequence,
                "hash": newest.hash,
                "last_event_id": newest.last_event_id,
            }
            if newest
            else None
        ),
        "note": (
            ""
            if seal
            else "Some exported rows were not sealed yet when exported (sealing runs every few "
            "minutes); verify again with --db once they are."
        ),
        "verify": f"python manage.py audit_verify_export manifest-{export.pk}.json {export.filename}",
    }
    # AuditExport is bookkeeping, not the trail: completing it is an ordinary update.
    AuditExport.objects.filter(pk=export.pk).update(
        completed_at=timezone.now(),
        event_count=count,
        first_event_id=first_id,
        last_event_id=last_id,
        sha256=sha256,
        manifest=manifest,
    )


async def export_chunks_async(export: AuditExport, query: AuditQuery) -> AsyncIterator[bytes]:
    """The same stream for ASGI servers: Django would otherwise buffer a sync iterator whole.
    Each block is produced in the thread that owns the database connection."""
    iterator = export_chunks(export, query)
    done = object()
    step = sync_to_async(next, thread_sensitive=True)
    while True:
        chunk = await step(iterator, done)
        if chunk is done:
            break
        yield chunk
