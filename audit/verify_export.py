"""Verify an audit export against its manifest. Runs stand-alone (only the standard library):

    python audit/verify_export.py manifest-12.json audit-12.jsonl

and is also what `manage.py audit_verify_export` uses (which adds --db: check rows against seals).
"""

import csv
import hashlib
import itertools
import json
import sys
from typing import Any


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _ids(path: str, file_format: str) -> list[int]:
    with open(path, encoding="utf-8", newline="") as handle:
        if file_format == "jsonl":
            return [int(json.loads(line)["id"]) for line in handle if line.strip()]
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header or header[0] != "id":
            raise ValueError("The CSV file does not start with the export header.")
        return [int(row[0]) for row in reader if row]


def verify_file(manifest_path: str, export_path: str) -> tuple[list[str], dict[str, Any]]:
    """Problems found (empty when the file matches) and the manifest."""
    with open(manifest_path, encoding="utf-8") as handle:
        try:
            manifest = json.load(handle)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{manifest_path} is not a JSON manifest: {exc}") from exc
    problems = []
    actual = _sha256(export_path)
    if actual != manifest.get("sha256"):
        problems.append(
            f"sha256 differs: file {actual}, manifest {manifest.get('sha256')} "
            "(the file was changed or is not the one this manifest describes)"
        )
    try:
        ids = _ids(export_path, manifest.get("file_format", "jsonl"))
    except (ValueError, KeyError, json.JSONDecodeError) as exc:
        return [*problems, f"cannot read the rows: {exc}"], manifest
    if len(ids) != manifest.get("event_count"):
        problems.append(
            f"{len(ids)} rows in the file, {manifest.get('event_count')} in the manifest"
        )
    if ids and (
        ids[0] != manifest.get("first_event_id") or ids[-1] != manifest.get("last_event_id")
    ):
        problems.append(
            f"id range {ids[0]}-{ids[-1]} differs from the manifest's "
            f"{manifest.get('first_event_id')}-{manifest.get('last_event_id')}"
        )
    for previous, current in itertools.pairwise(ids):
        if current <= previous:
            problems.append(f"row {current} follows row {previous}: rows are not in id order")
            break
    return problems, manifest


def verify_against_seals(manifest: dict[str, Any], export_path: str) -> list[str]:
    """Needs Django: compare each JSON Lines row with the digest its seal recorded."""
    from audit.models import AuditSeal
    from audit.sealing import ENTRY_DIGEST_CHARS, chain_name
    from tenants.models import Organization

    if manifest.get("file_format") != "jsonl":
        return ["--db checks need the JSON Lines export (CSV cells are not the canonical form)"]
    org = Organization.objects.filter(slug=manifest.get("organization")).first()
    if org is None:
        return [f"organization {manifest.get('organization')!r} does not exist here"]
    problems: list[str] = []
    sealed: dict[int, str] = {}
    seals = AuditSeal.objects.filter(
        chain=chain_name(org.id),
        kind="events",
        last_event_id__gte=manifest["first_event_id"] or 0,
        first_event_id__lte=manifest["last_event_id"] or 0,
    )
    for seal in seals.iterator(chunk_size=50):
        for entry in seal.entries.split("\n"):
            event_id, _, short = entry.partition(":")
            sealed[int(event_id)] = short
    with open(export_path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            short = sealed.get(int(row["id"]))
            if short is None:
                problems.append(f"row {row['id']} is not covered by a seal yet")
                continue
            digest = hashlib.sha256(line.rstrip("\n").encode()).hexdigest()
            if digest[:ENTRY_DIGEST_CHARS] != short:
                problems.append(f"row {row['id']} differs from the row that was sealed")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: verify_export.py MANIFEST.json EXPORT_FILE", file=sys.stderr)
        return 2
    problems, manifest = verify_file(argv[1], argv[2])
    for problem in problems:
        print("FAIL:", problem)
    if not problems:
        print(
            f"OK: {manifest['event_count']} rows, events {manifest['first_event_id']}-"
            f"{manifest['last_event_id']}, sha256 {manifest['sha256']}"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
