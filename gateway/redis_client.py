"""One asyncio Redis client per event loop (redis.asyncio pools are bound to the loop that first
used them), or None when REDIS_URL is not set."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from gateway.conf import django_setting

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[str, Any]] = (
    weakref.WeakKeyDictionary()
)


def redis_client():  # type: ignore[no-untyped-def]
    url = django_setting("REDIS_URL", "")
    if not url:
        return None
    loop = asyncio.get_running_loop()
    entry = _clients.get(loop)
    if entry is None or entry[0] != url:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        entry = _clients[loop] = (url, client)
    return entry[1]
