"""Tamper evidence: the canonical form of an audit row, the per-organization seal chain, and the
verification that recomputes it.

A seal covers the next rows of one chain (an organization, or "system" for events without one) in
id order. Its hash is

    sha256( previous_hash "\\n" header_json "\\n" row_digest_1 "\\n" ... row_digest_n "\\n" )

where `row_digest` is the full sha256 of the row's canonical JSON (`canonical_json`) and the
header binds the chain, sequence, kind, id range, count and note. Changing, removing or inserting
a row inside a sealed range, or editing, removing or reordering a seal, breaks the recomputation;
`entries` (a short digest per row) lets the verifier name the exact row.

Rows are sealed only once they are older than AUDIT_SEAL_LAG_SECONDS so a slow transaction that
took an id earlier cannot commit into a range that was already sealed.
"""

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import AuditEvent, AuditSeal, SealKind

GENESIS_HASH = "0" * 64
ENTRY_DIGEST_CHARS = 16

# The canonical field order of an exported / sealed row. Adding a column to AuditEvent means
# adding it here (and old seals keep verifying because absent keys are not emitted as null).
CANONICAL_FIELDS = (
    "id",
    "organization_id",
    "occurred_at",
    "action",
    "outcome",
    "actor_user_id",
    "actor_label",
    "agent_id",
    "agent_label",
    "on_behalf_of_id",
    "on_behalf_of_label",
    "target_type",
    "target_id",
    "target_label",
    "server",
    "tool",
    "decision",
    "error_class",
    "latency_ms",
    "upstream_latency_ms",
    "details",
    "request_id",
    "source_ip",
)


def _format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_dict(row: dict[str, Any]) -> dict[str, Any]:
    """The JSON-safe dict of one row (from `.values(*CANONICAL_FIELDS)`)."""
    out = {}
    for name in CANONICAL_FIELDS:
        value = row[name]
        if isinstance(value, datetime):
            value = _format_time(value)
        out[name] = value
    return out


def canonical_json(row: dict[str, Any]) -> str:
    """Deterministic JSON: sorted keys, no spaces, UTF-8 kept. Also the JSON Lines export line."""
    return json.dumps(
        canonical_dict(row), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def row_digest(row: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(row).encode()).hexdigest()


def chain_name(org_id: int | None) -> str:
    return f"org:{org_id}" if org_id is not None else "system"


def _header(
    *,
    chain: str,
    sequence: int,
    kind: str,
    first_id: int | None,
    last_id: int | None,
    count: int,
    note: dict[str, Any],
) -> str:
    return json.dumps(
        {
            "chain": chain,
            "sequence": sequence,
            "kind": kind,
            "first_event_id": first_id,
            "last_event_id": last_id,
            "event_count": count,
            "note": note,
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def seal_hash(*, previous_hash: str, header: str, digests: Iterable[str]) -> str:
    h = hashlib.sha256()
    h.update(previous_hash.encode() + b"\n" + header.encode() + b"\n")
    for digest in digests:
        h.update(digest.encode() + b"\n")
    return h.hexdigest()


def _seal_header_of(seal: AuditSeal) -> str:
    return _header(
        chain=seal.chain,
        sequence=seal.sequence,
        kind=seal.kind,
        first_id=seal.first_event_id,
        last_id=seal.last_event_id,
        count=seal.event_count,
        note=seal.note,
    )


def _events_for_chain(org_id: int | None) -> Any:
    qs = AuditEvent.objects.all()
    return (
        qs.filter(organization_id=org_id)
        if org_id is not None
        else qs.filter(organization__isnull=True)
    )


def last_seal(chain: str) -> AuditSeal | None:
    return AuditSeal.objects.filter(chain=chain).order_by("-sequence").first()


def append_seal(
    *,
    org_id: int | None,
    kind: str,
    rows: list[dict[str, Any]],
    note: dict[str, Any] | None = None,
) -> AuditSeal:
    """Append one link to the chain of `org_id`. Call inside a transaction; a concurrent sealer
    appending the same sequence makes this raise IntegrityError (the caller backs off)."""
    chain = chain_name(org_id)
    previous = last_seal(chain)
    previous_hash = previous.hash if previous else GENESIS_HASH
    sequence = previous.sequence + 1 if previous else 1
    note = note or {}
    digests = [row_digest(r) for r in rows]
    first_id = rows[0]["id"] if rows else None
    last_id = rows[-1]["id"] if rows else None
    header = _header(
        chain=chain,
        sequence=sequence,
        kind=kind,
        first_id=first_id,
        last_id=last_id,
        count=len(rows),
        note=note,
    )
    return AuditSeal.objects.create(
        organization_id=org_id,
        chain=chain,
        sequence=sequence,
        kind=kind,
        first_event_id=first_id,
        last_event_id=last_id,
        event_count=len(rows),
        last_occurred_at=rows[-1]["occurred_at"] if rows else None,
        previous_hash=previous_hash,
        hash=seal_hash(previous_hash=previous_hash, header=header, digests=digests),
        entries="\n".join(
            f"{r['id']}:{d[:ENTRY_DIGEST_CHARS]}" for r, d in zip(rows, digests, strict=True)
        ),
        note=note,
    )


def seal_chain(*, org_id: int | None, max_batches: int | None = None) -> int:
    """Seal the unsealed rows of one chain that are older than the lag, in bounded batches.
    Returns how many rows were sealed. Safe to run concurrently and to retry."""
    batch = settings.AUDIT_SEAL_BATCH_SIZE
    max_batches = max_batches or settings.AUDIT_SEAL_MAX_BATCHES
    horizon = timezone.now() - timedelta(seconds=settings.AUDIT_SEAL_LAG_SECONDS)
    chain = chain_name(org_id)
    sealed = 0
    for _ in range(max_batches):
        try:
            with transaction.atomic():
                previous = last_seal(chain)
                after = _last_sealed_event_id(chain, previous)
                rows = list(
                    _events_for_chain(org_id)
                    .filter(id__gt=after)
                    .order_by("id")
                    .values(*CANONICAL_FIELDS)[:batch]
                )
                # Stop at the first row still inside the lag: everything after it waits.
                for index, row in enumerate(rows):
                    if row["occurred_at"] > horizon:
                        rows = rows[:index]
                        break
                if not rows:
                    return sealed
                append_seal(org_id=org_id, kind=SealKind.EVENTS, rows=rows)
        except IntegrityError:
            return sealed  # another sealer appended this link first; it will carry on
        sealed += len(rows)
        if len(rows) < batch:
            break
    return sealed


def _last_sealed_event_id(chain: str, previous: AuditSeal | None) -> int:
    if previous is None:
        return 0
    if previous.last_event_id is not None and previous.kind == SealKind.EVENTS:
        return previous.last_event_id
    seal = AuditSeal.objects.filter(chain=chain, kind=SealKind.EVENTS).order_by("-sequence").first()
    return seal.last_event_id if seal and seal.last_event_id else 0


def chains_with_events() -> list[int | None]:
    """Org ids (and None for system events) that have audit rows or seals."""
    from tenants.models import Organization

    ids: list[int | None] = list(Organization.objects.order_by("id").values_list("id", flat=True))
    if AuditEvent.objects.filter(organization__isnull=True).exists():
        ids.append(None)
    return ids


# --- Verification -------------------------------------------------------------------------------


@dataclass
class Problem:
    kind: str  # changed | removed | inserted | out_of_order | seal_broken
    message: str
    event_id: int | None = None
    seal_sequence: int | None = None


@dataclass
class VerifyReport:
    chain: str
    seals: int = 0
    rows_checked: int = 0
    unsealed_rows: int = 0
    purged_ranges: list[tuple[int, int]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _rows_between(org_id: int | None, first: int, last: int) -> Iterator[dict[str, Any]]:
    yield from (
        _events_for_chain(org_id)
        .filter(id__gte=first, id__lte=last)
        .order_by("id")
        .values(*CANONICAL_FIELDS)
        .iterator(chunk_size=2000)
    )


def verify_chain(*, org_id: int | None, max_problems: int = 20) -> VerifyReport:
    """Recompute the chain of `org_id` from the database and report what does not match: a seal
    edited or missing, a sealed row changed or removed, a row inserted into a sealed range, and a
    row whose time runs backwards (inserted out of order) anywhere in the trail."""
    chain = chain_name(org_id)
    report = VerifyReport(chain=chain)
    seals = list(AuditSeal.objects.filter(chain=chain).order_by("sequence"))
    purged_up_to = 0
    for seal in seals:
        if seal.kind == SealKind.PURGE:
            purged_up_to = max(purged_up_to, int(seal.note.get("removed_last_event_id") or 0))
            report.purged_ranges.append(
                (seal.note.get("removed_first_event_id"), seal.note.get("removed_last_event_id"))
            )

    expected_previous = GENESIS_HASH
    expected_sequence = 1
    for seal in seals:
        report.seals += 1
        if seal.sequence != expected_sequence:
            report.problems.append(
                Problem(
                    "seal_broken",
                    f"seal #{expected_sequence} is missing (the chain jumps to #{seal.sequence})",
                    seal_sequence=expected_sequence,
                )
            )
        if seal.previous_hash != expected_previous:
            report.problems.append(
                Problem(
                    "seal_broken",
                    f"seal #{seal.sequence} does not continue the chain (previous hash differs)",
                    seal_sequence=seal.sequence,
                )
            )
        expected_previous = seal.hash
        expected_sequence = seal.sequence + 1
        if seal.kind == SealKind.PURGE or not seal.entries:
            header = _seal_header_of(seal)
            if seal_hash(previous_hash=seal.previous_hash, header=header, digests=[]) != seal.hash:
                report.problems.append(
                    Problem(
                        "seal_broken",
                        f"seal #{seal.sequence} was edited",
                        seal_sequence=seal.sequence,
                    )
                )
            continue
        if seal.last_event_id is not None and seal.last_event_id <= purged_up_to:
            continue  # rows removed by a recorded retention purge; the link itself still chains
        _verify_sealed_rows(org_id, seal, report)
        if len(report.problems) >= max_problems:
            return report

    last_sealed = max((s.last_event_id or 0 for s in seals if s.kind == SealKind.EVENTS), default=0)
    report.unsealed_rows = _events_for_chain(org_id).filter(id__gt=last_sealed).count()
    _verify_time_order(org_id, purged_up_to, report, max_problems)
    return report


def _verify_sealed_rows(org_id: int | None, seal: AuditSeal, report: VerifyReport) -> None:
    entries: list[tuple[int, str]] = []
    for line in seal.entries.split("\n"):
        event_id, _, short = line.partition(":")
        entries.append((int(event_id), short))
    rows = {
        row["id"]: row
        for row in _rows_between(org_id, seal.first_event_id or 0, seal.last_event_id or 0)
    }
    expected_ids = {event_id for event_id, _ in entries}
    digests: list[str] = []
    for event_id, short in entries:
        row = rows.get(event_id)
        if row is None:
            report.problems.append(
                Problem(
                    "removed",
                    f"row {event_id} (sealed in #{seal.sequence}) was removed",
                    event_id=event_id,
                    seal_sequence=seal.sequence,
                )
            )
            continue
        digest = row_digest(row)
        digests.append(digest)
        report.rows_checked += 1
        if digest[:ENTRY_DIGEST_CHARS] != short:
            report.problems.append(
                Problem(
                    "changed",
                    f"row {event_id} ({row['action']}) was changed after it was sealed in #{seal.sequence}",
                    event_id=event_id,
                    seal_sequence=seal.sequence,
                )
            )
    for event_id in sorted(set(rows) - expected_ids):
        report.problems.append(
            Problem(
                "inserted",
                f"row {event_id} appeared inside the range sealed by #{seal.sequence}",
                event_id=event_id,
                seal_sequence=seal.sequence,
            )
        )
    recomputed = seal_hash(
        previous_hash=seal.previous_hash, header=_seal_header_of(seal), digests=digests
    )
    row_problem = any(p.seal_sequence == seal.sequence for p in report.problems)
    if recomputed != seal.hash and not row_problem:
        report.problems.append(
            Problem(
                "seal_broken",
                f"seal #{seal.sequence} does not match its rows (the seal or its entries were edited)",
                seal_sequence=seal.sequence,
            )
        )


def _verify_time_order(
    org_id: int | None, after_id: int, report: VerifyReport, max_problems: int
) -> None:
    """Rows are appended as things happen, so times grow with ids (up to a tolerance for clocks
    and for calls that record their start time). A row whose time falls further behind the
    newest time seen before it was inserted later with a back-dated time."""
    tolerance = timedelta(seconds=settings.AUDIT_CLOCK_TOLERANCE_SECONDS)
    newest: datetime | None = None
    newest_id = 0
    rows = (
        _events_for_chain(org_id)
        .filter(id__gt=after_id)
        .order_by("id")
        .values_list("id", "occurred_at")
        .iterator(chunk_size=5000)
    )
    for event_id, occurred_at in rows:
        if newest is not None and occurred_at < newest - tolerance:
            report.problems.append(
                Problem(
                    "out_of_order",
                    f"row {event_id} is dated {_format_time(occurred_at)}, before row {newest_id} "
                    f"({_format_time(newest)}): it was inserted out of order",
                    event_id=event_id,
                )
            )
            if len(report.problems) >= max_problems:
                return
            continue
        if newest is None or occurred_at > newest:
            newest, newest_id = occurred_at, event_id
