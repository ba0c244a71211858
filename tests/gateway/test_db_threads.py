"""gateway.db runs ORM and cache work on a few long-lived threads, each request's context
variables (request id, source IP) carried in. What those threads build for themselves (Django's
cache backend objects, and with REDIS_URL their Redis client and connection pool) must be built
once per thread, not once per request."""

from __future__ import annotations

import asyncio

import pytest
from django.core.cache import caches

from audit.context import RequestContext, current, set_context
from gateway.conf import gateway_settings
from gateway.db import run_db, run_writer


# The DB threads are shared with earlier tests: their periodic connection health check needs
# database access even though this test reads only the cache.
@pytest.mark.django_db(transaction=True)
def test_cache_clients_are_built_once_per_thread_not_per_request():
    backends: set[int] = set()
    seen: list[str | None] = []

    def read() -> None:
        cache = caches["default"]
        cache.get("gateway-db-threads-test")
        backends.add(id(cache))
        ctx = current()
        seen.append(ctx.request_id if ctx else None)

    async def request(n: int) -> None:
        set_context(RequestContext(request_id=f"req-{n}"))
        await run_db(read)
        await run_writer(read)

    async def scenario() -> None:
        for wave in range(15):
            await asyncio.gather(*(request(wave * 4 + k) for k in range(4)))
        await run_db(read)  # a call outside any request

    asyncio.run(scenario())
    # Sixty requests: one backend per DB thread and one for the audit writer's thread, at most.
    assert len(backends) <= gateway_settings().db_threads + 1
    # Each call saw its own request's id, and none leaked into the call made outside a request.
    assert sorted(seen[:-1]) == sorted(f"req-{n}" for n in range(60) for _ in range(2))
    assert seen[-1] is None
