"""Group commit of the gateway's audit records.

Every tools/call must have its `tool.call` record committed before its result is returned, and a
call whose record cannot be written fails. Writing each record in its own transaction costs a
thread hop, an INSERT and a COMMIT (a disk flush on PostgreSQL) per call; under concurrency the
calls queue behind each other's commits. Here one writer (one DB thread, one connection, one
batch in flight) takes every record queued so far, inserts them in one transaction, commits,
and only then wakes their callers. Records that arrive while a batch commits form the next batch.
A lone call is written at once (no waiting for company), so latency at low load is unchanged.

Guarantees, each tested in tests/gateway/test_audit_writer.py:
- `await write(event)` returns only after the transaction holding the event committed: a crash
  after that loses no record; a crash before it returns no result.
- If the batch cannot be written (database unreachable, commit failed), every caller in it gets
  `AuditWriteFailed` and its call fails (fail closed).
- One record the database refuses (a `DataError`, e.g. a value PostgreSQL cannot store) fails
  only its own call: the batch is retried row by row, each in its own transaction, so one agent
  cannot make other agents' calls fail.
- A caller that gives up (its request was cancelled) does not cancel the write of its record.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError

from gateway.db import run_writer

logger = logging.getLogger(__name__)

MAX_BATCH = 256


class AuditWriteFailed(Exception):
    """The audit record could not be committed; the call it describes must fail."""


_services: Any = None


def audit_services() -> Any:
    """audit.services, imported on first use (it needs Django's app registry), then kept: an
    import statement inside a function goes through the import machinery on every call. The
    module, not its functions, so tests can still replace them."""
    global _services
    if _services is None:
        from audit import services

        _services = services
    return _services


def _commit(events: Sequence[Any]) -> list[BaseException | None]:
    """Insert `events` in one transaction (sync, on the writer thread). Returns one entry per
    event: None when it was committed, the error when it was refused on its own."""
    save_events = audit_services().save_events
    try:
        save_events(events)
        return [None] * len(events)
    except (OperationalError, InterfaceError):
        raise  # the database is not answering: the whole batch fails
    except DatabaseError:
        if len(events) == 1:
            raise
    # Some row was refused: find which, each in its own transaction.
    results: list[BaseException | None] = []
    for event in events:
        try:
            save_events([event])
            results.append(None)
        except (OperationalError, InterfaceError):
            raise
        except DatabaseError as exc:
            results.append(exc)
    return results


def _retrieve(future: asyncio.Future[None]) -> None:
    # A caller that was cancelled never reads its future's exception; read it here so asyncio
    # does not log "exception was never retrieved".
    if not future.cancelled():
        future.exception()


class _LoopWriter:
    """The queue and the drain task of one event loop (futures belong to their loop)."""

    def __init__(self) -> None:
        self.queue: list[tuple[Any, asyncio.Future[None]]] = []
        self.task: asyncio.Task[None] | None = None
        self.batches = 0  # committed batches (for tests and the benchmark)
        self.rows = 0

    async def drain(self) -> None:
        try:
            while self.queue:
                batch = self.queue[:MAX_BATCH]
                del self.queue[:MAX_BATCH]
                events = [event for event, _ in batch]
                try:
                    outcomes = await run_writer(_commit, events)
                except BaseException as exc:
                    # The message of a connection error helps the operator; row data never
                    # reaches it (a refused row is reported by its error class only).
                    reason = str(exc) if isinstance(exc, OperationalError | InterfaceError) else ""
                    logger.error(
                        "audit batch of %d record(s) could not be written: %s %s",
                        len(batch),
                        type(exc).__name__,
                        reason[:300],
                    )
                    for _, future in batch:
                        if not future.done():
                            failure = AuditWriteFailed(type(exc).__name__)
                            failure.__cause__ = exc
                            future.set_exception(failure)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                self.batches += 1
                for (_, future), error in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if error is None:
                        self.rows += 1
                        future.set_result(None)
                    else:
                        logger.error("an audit record was refused: %s", type(error).__name__)
                        failure = AuditWriteFailed(type(error).__name__)
                        failure.__cause__ = error
                        future.set_exception(failure)
        finally:
            self.task = None


class AuditWriter:
    def __init__(self) -> None:
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopWriter] = (
            weakref.WeakKeyDictionary()
        )

    def _for_loop(self) -> tuple[asyncio.AbstractEventLoop, _LoopWriter]:
        loop = asyncio.get_running_loop()
        writer = self._loops.get(loop)
        if writer is None:
            writer = self._loops[loop] = _LoopWriter()
        return loop, writer

    def stats(self) -> tuple[int, int]:
        """(batches committed, records committed) on the current loop."""
        _, writer = self._for_loop()
        return writer.batches, writer.rows

    async def write(self, event: Any) -> None:
        """Queue `event` (an unsaved AuditEvent from `audit.services.build_event`) and return
        once it is committed; AuditWriteFailed if it could not be."""
        loop, writer = self._for_loop()
        future: asyncio.Future[None] = loop.create_future()
        future.add_done_callback(_retrieve)
        writer.queue.append((event, future))
        if writer.task is None:
            writer.task = loop.create_task(writer.drain(), name="gateway-audit-writer")
        # Not shielded: a cancelled caller cancels only its own future. The event stays in
        # the queue (or the batch in flight) and the drain task writes it all the same.
        await future


audit_writer = AuditWriter()
