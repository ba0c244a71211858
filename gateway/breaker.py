"""A circuit breaker per upstream server.

Closed: calls go through; each failure (connection lost, timeout) adds one to a counter that a
success resets. After `GATEWAY_BREAKER_FAILURES` consecutive failures the circuit opens: calls
are refused at once (error class `circuit_open`) for `GATEWAY_BREAKER_COOLDOWN` seconds. Then
it is half-open: one call (the probe) goes through; its success closes the circuit, its failure
opens it again for another cool-down.

With REDIS_URL set, the state lives in Redis so every replica sees the same circuit; without it,
in this process. A replica that believes the circuit closed re-reads Redis at most every
`_CLOSED_RECHECK` seconds, so the extra cost per call on a healthy server is near zero.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.conf import gateway_settings
from gateway.errors import CircuitOpen
from gateway.redis_client import redis_client

_CLOSED_RECHECK = 0.5
_PREFIX = "gw:cb:"

# KEYS[1] failures counter, KEYS[2] open-until (epoch seconds); ARGV: threshold, cooldown, now
_FAIL_LUA = """
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], 3600)
if n >= tonumber(ARGV[1]) then
  local until_ = tonumber(ARGV[3]) + tonumber(ARGV[2])
  redis.call('SET', KEYS[2], tostring(until_), 'EX', math.ceil(tonumber(ARGV[2])) + 3600)
  return 1
end
return 0
"""


@dataclass
class _Local:
    failures: int = 0
    open_until: float = 0.0  # 0: never opened / closed
    probing: bool = False
    checked_at: float = 0.0  # Redis mode: when we last saw it closed


class CircuitBreakers:
    def __init__(self) -> None:
        self._local: dict[str, _Local] = {}
        self._fail_script: dict[int, object] = {}

    def _state(self, key: str) -> _Local:
        state = self._local.get(key)
        if state is None:
            state = self._local[key] = _Local()
        return state

    async def before_call(self, key: str, label: str) -> bool:
        """Raise CircuitOpen when the circuit refuses calls; return True when this call is the
        half-open probe."""
        now = time.time()
        state = self._state(key)
        client = redis_client()
        if client is None:
            if state.open_until == 0.0:
                return False
            if now < state.open_until or state.probing:
                self._refuse(label, max(state.open_until - now, 1.0))
            state.probing = True
            return True
        if state.open_until == 0.0 and time.monotonic() - state.checked_at < _CLOSED_RECHECK:
            return False
        raw = await client.get(_PREFIX + key + ":open")
        if raw is None:
            state.open_until = 0.0
            state.checked_at = time.monotonic()
            return False
        state.open_until = float(raw)
        if now < state.open_until:
            self._refuse(label, state.open_until - now)
        # Half-open: exactly one probe across replicas.
        if await client.set(
            _PREFIX + key + ":probe",
            b"1",
            nx=True,
            ex=max(5, int(gateway_settings().call_timeout) + 5),
        ):
            return True
        self._refuse(label, 1.0)
        return False  # unreachable

    @staticmethod
    def _refuse(label: str, retry_after: float) -> None:
        raise CircuitOpen(
            f"The upstream server '{label}' is failing; the gateway stopped sending it calls "
            f"for a while (circuit open). Retry in {max(1, round(retry_after))} s.",
            retry_after=retry_after,
        )

    async def record_success(self, key: str) -> None:
        state = self._state(key)
        client = redis_client()
        if client is None:
            state.failures = 0
            state.open_until = 0.0
            state.probing = False
            return
        if state.failures or state.open_until:
            await client.delete(
                _PREFIX + key + ":fail", _PREFIX + key + ":open", _PREFIX + key + ":probe"
            )
            state.failures = 0
            state.open_until = 0.0
            state.checked_at = time.monotonic()

    async def record_failure(self, key: str) -> None:
        settings = gateway_settings()
        now = time.time()
        state = self._state(key)
        client = redis_client()
        if client is None:
            state.failures += 1
            if state.probing or state.failures >= settings.breaker_failures:
                state.open_until = now + settings.breaker_cooldown
            state.probing = False
            return
        state.failures += 1
        script = self._fail_script.get(id(client))
        if script is None:
            script = client.register_script(_FAIL_LUA)
            self._fail_script[id(client)] = script
        threshold = 1 if state.open_until else settings.breaker_failures
        opened = await script(  # type: ignore[operator]
            keys=[_PREFIX + key + ":fail", _PREFIX + key + ":open"],
            args=[threshold, settings.breaker_cooldown, now],
        )
        await client.delete(_PREFIX + key + ":probe")
        if opened:
            state.open_until = now + settings.breaker_cooldown

    def reset(self) -> None:
        self._local.clear()


breakers = CircuitBreakers()
