"""Database work from the async gateway: a small dedicated thread pool.

Django's ORM is synchronous and its connections are per thread. Running every query on a few
long-lived threads (rather than the loop's default executor, which grows to dozens) bounds the
number of connections a replica opens, keeps them persistent (CONN_MAX_AGE) and lets concurrent
requests use several connections at once, which `sync_to_async(thread_sensitive=True)` (one
thread for everything) would not. The caller's contextvars (request id, source IP) are carried
into the thread so audit records pick them up.

Audit rows of tools/call have a thread of their own (`run_writer`, one thread, one connection):
gateway.audit_writer sends it one batch at a time (group commit), so audit writes never queue
behind authentication or policy loads, nor those behind a burst of audit writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from django.db import close_old_connections, connections

from gateway.conf import gateway_settings

P = ParamSpec("P")
T = TypeVar("T")

# Stale or broken connections are dropped at most this often per thread (each check may cost a
# round trip with CONN_HEALTH_CHECKS on).
_HEALTH_EVERY = 5.0
_local = threading.local()
_executor: ThreadPoolExecutor | None = None
_writer: _WriterThread | None = None
_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        with _lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(
                    max_workers=gateway_settings().db_threads, thread_name_prefix="gateway-db"
                )
    return _executor


class _WriterThread:
    """One thread running submitted work in order: the audit writer's.

    Lighter than a one-worker ThreadPoolExecutor behind `run_in_executor` (a lock, a work item,
    a concurrent future chained to an asyncio one, per batch): a SimpleQueue in, one
    `call_soon_threadsafe` out."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], Callable[..., None]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._main, name="gateway-audit", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            # RuntimeError: the loop is closed, nobody waits any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, result, error)

        self._queue.put((fn, settle))
        return future

    def _main(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, settle = item
            try:
                result = fn()
            except BaseException as exc:  # handed to the awaiting task, as an executor would
                settle(None, exc)
            else:
                settle(result, None)

    def stop(self) -> None:
        """Close this thread's database connection, then end the thread."""
        closed = threading.Event()
        self._queue.put((connections.close_all, lambda *_: closed.set()))
        self._queue.put(None)
        closed.wait(timeout=10)
        self._thread.join(timeout=10)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting task was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _writer_thread() -> _WriterThread:
    global _writer
    if _writer is None:
        with _lock:
            if _writer is None:
                _writer = _WriterThread()
    return _writer


def _run[**P, T](
    ctx: contextvars.Context, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    now = time.monotonic()
    if now - getattr(_local, "checked", 0.0) > _HEALTH_EVERY:
        close_old_connections()
        _local.checked = now
    try:
        return _thread_context().run(_in_request_context, ctx, fn, *args, **kwargs)
    except Exception:
        # A broken connection must not poison the thread: drop it, the next call reconnects.
        # Whatever the exception (not only a database error: code that failed half-way
        # through a statement counts too), the connection is checked before it is reused.
        for connection in connections.all(initialized_only=True):
            connection.errors_occurred = True
        close_old_connections()
        _local.checked = time.monotonic()
        raise


def _thread_context() -> contextvars.Context:
    context = getattr(_local, "context", None)
    if context is None:
        context = _local.context = contextvars.Context()
    return context


def _in_request_context[**P, T](
    ctx: contextvars.Context, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """Run `fn` in this thread's own context with the request's context variables set (request
    id, source IP, the current gateway request) and unset again afterwards.

    Not simply `ctx.run(fn)`: asgiref's `Local` (behind `django.core.cache.caches`) keeps its
    objects in a context variable tagged with the thread that set it, so in a fresh copy of the
    request's context every cache read found nothing and built a new cache backend object, and
    with Redis a new client and connection pool: a TCP connection to Redis per request. Kept
    in the thread's own context, they are built once per thread, as in a Django worker. The
    request's own asgiref storage (tagged with the event loop's thread, ignored here anyway)
    is not copied over."""
    tokens = [(var, var.set(value)) for var, value in ctx.items() if var.name != "asgiref.local"]
    try:
        return fn(*args, **kwargs)
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


async def run_db[**P, T](fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `fn(*args, **kwargs)` (ORM code) on a gateway DB thread and await its result."""
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    return await loop.run_in_executor(_pool(), lambda: _run(ctx, fn, *args, **kwargs))


async def run_writer[**P, T](fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `fn(*args, **kwargs)` on the audit writer's thread (one thread, one connection)."""
    ctx = contextvars.copy_context()
    return await _writer_thread().submit(lambda: _run(ctx, fn, *args, **kwargs))


class SingleFlight:
    """Concurrent callers asking for the same key on one event loop share one execution.

    When a cache entry (an agent key, an organization's policy version) expires under load,
    every request in flight would otherwise make the same database round trip, each with a
    thread hop. The first caller starts the work as a task; the others await the same task
    (shielded: a cancelled caller does not cancel it for the rest). `forget` makes later
    callers start afresh (what an in-flight task returns still reaches its own waiters)."""

    def __init__(self) -> None:
        self._inflight: dict[tuple[int, Hashable], asyncio.Task[Any]] = {}

    async def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        slot = (id(loop), key)
        task = self._inflight.get(slot)
        if task is None or task.done() or task.get_loop() is not loop:
            task = loop.create_task(work())  # type: ignore[arg-type]
            self._inflight[slot] = task
            task.add_done_callback(lambda done: self._done(slot, done))
        return await asyncio.shield(task)

    def _done(self, slot: tuple[int, Hashable], task: asyncio.Task[Any]) -> None:
        if self._inflight.get(slot) is task:
            del self._inflight[slot]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone

    def forget(self, key: Hashable | None = None) -> None:
        for slot in list(self._inflight):
            if key is None or slot[1] == key:
                self._inflight.pop(slot, None)


def shutdown() -> None:
    """Close every DB thread's connection and stop the threads (at the end of the lifespan)."""
    global _executor, _writer
    with _lock:
        executor, writer = _executor, _writer
        _executor = _writer = None
    if executor is not None:
        _close_threads(executor)
    if writer is not None:
        writer.stop()


def _close_threads(executor: ThreadPoolExecutor) -> None:
    workers = len(executor._threads)  # each thread takes exactly one task thanks to the barrier
    barrier = threading.Barrier(workers) if workers else None

    def close() -> None:
        connections.close_all()
        if barrier is not None:
            barrier.wait(timeout=5)

    futures = [executor.submit(close) for _ in range(workers)]
    for future in futures:
        try:
            future.result(timeout=10)
        except Exception:  # noqa: S112 - best effort at shutdown
            continue
    executor.shutdown(wait=True)
