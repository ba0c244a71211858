"""One asyncio Redis client per event loop (redis.asyncio pools are bound to the loop that first
used them), or None when REDIS_URL is not set."""

from __future__ import annotations

import asyncio
import weakref

from django.conf import settings

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, object] = weakref.WeakKeyDictionary()


def redis_client():  # type: ignore[no-untyped-def]
    url = getattr(settings, "REDIS_URL", "")
    if not url:
        return None
    import redis.asyncio as aioredis

    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        _clients[loop] = client
    return client
