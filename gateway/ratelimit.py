"""Rate limits and quotas from the policy (`Decision.limits`), enforced before any upstream call.

Fixed windows (a minute, a day) aligned to the clock: one counter per limit key and window.
A call is admitted only if *every* limit that applies to it has room; then all of its counters
are incremented together, so a refused call consumes nothing.

With REDIS_URL set, the check-and-increment is one Lua script (atomic across replicas).
Otherwise the Django cache is used, which is exact within one process (the trial mode).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from django.core.cache import cache

from gateway.redis_client import redis_client
from policies.engine import Limit

_PREFIX = "gw:rl:"

# KEYS: one counter per limit; ARGV: max_1, ttl_1, max_2, ttl_2, ...
# Returns 0 when admitted (all incremented), else the 1-based index of the first full limit.
_LUA = """
for i, key in ipairs(KEYS) do
  local used = tonumber(redis.call('GET', key) or '0')
  if used >= tonumber(ARGV[2 * i - 1]) then
    return i
  end
end
for i, key in ipairs(KEYS) do
  local used = redis.call('INCR', key)
  if used == 1 then
    redis.call('EXPIRE', key, tonumber(ARGV[2 * i]))
  end
end
return 0
"""


@dataclass(frozen=True)
class RateLimited:
    limit: Limit
    retry_after: float

    def message(self) -> str:
        per = "minute" if self.limit.window == "minute" else "day"
        return (
            f"Rate limit reached: at most {self.limit.max_calls} calls per {per} "
            f"({self.limit.rule}). Retry in {math.ceil(self.retry_after)} s."
        )


def _window(limit: Limit, now: float) -> tuple[str, int, float]:
    """(counter key, ttl seconds, seconds until the window ends)."""
    size = limit.window_seconds
    index = int(now // size)
    remaining = (index + 1) * size - now
    return f"{_PREFIX}{limit.key}:{index}", size + 5, remaining


_script_cache: dict[int, object] = {}


async def check_and_consume(limits: Sequence[Limit]) -> RateLimited | None:
    """Admit the call (consuming one unit of every limit) or say which limit is full."""
    if not limits:
        return None
    now = time.time()
    windows = [_window(limit, now) for limit in limits]
    client = redis_client()
    if client is not None:
        script = _script_cache.get(id(client))
        if script is None:
            script = client.register_script(_LUA)
            _script_cache[id(client)] = script
        args: list[int] = []
        for limit, (_, ttl, _) in zip(limits, windows, strict=True):
            args += [limit.max_calls, ttl]
        full = int(await script(keys=[w[0] for w in windows], args=args))  # type: ignore[operator]
    else:
        full = _consume_in_cache(limits, windows)
    if full == 0:
        return None
    return RateLimited(limit=limits[full - 1], retry_after=windows[full - 1][2])


def _consume_in_cache(limits: Sequence[Limit], windows: list[tuple[str, int, float]]) -> int:
    for i, (limit, (key, _, _)) in enumerate(zip(limits, windows, strict=True), start=1):
        if (cache.get(key) or 0) >= limit.max_calls:
            return i
    for key, ttl, _ in windows:
        if not cache.add(key, 1, timeout=ttl):
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, timeout=ttl)
    return 0
