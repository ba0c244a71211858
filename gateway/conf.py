"""Gateway settings, read once from the environment (the same typed helpers as config/settings).

Kept here rather than in config/settings.py so the gateway's knobs live beside the code that
uses them; every value has a safe default for the trial mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from config.env import env_bool, env_float, env_int, env_list


def _hosts_and_origins() -> tuple[list[str], list[str]]:
    """Allowed Host headers and browser Origins for /mcp, derived from ALLOWED_HOSTS and SITE_URL.

    The SDK matches `host` and `host:*` patterns; we list both so a port is always accepted for a
    name we serve. `*` in ALLOWED_HOSTS turns host checking off (as it does for Django)."""
    hosts: list[str] = []
    origins: list[str] = []
    names = [h for h in settings.ALLOWED_HOSTS if h]
    site = urlsplit(settings.SITE_URL)
    if site.hostname:
        names.append(site.netloc)
    for name in names:
        bare = name.lstrip(".")  # Django's ".example.com" subdomain form: take the apex
        hosts += [bare, f"{bare}:*"]
        origins += [f"http://{bare}", f"http://{bare}:*", f"https://{bare}", f"https://{bare}:*"]
    if site.scheme and site.netloc:
        origins.append(f"{site.scheme}://{site.netloc}")
    hosts += env_list("GATEWAY_EXTRA_ALLOWED_HOSTS", [])
    origins += env_list("GATEWAY_ALLOWED_ORIGINS", [])
    return list(dict.fromkeys(hosts)), list(dict.fromkeys(origins))


@dataclass(frozen=True)
class GatewaySettings:
    allowed_hosts: list[str] = field(default_factory=list)
    allowed_origins: list[str] = field(default_factory=list)
    # False only when ALLOWED_HOSTS contains "*".
    check_hosts: bool = True
    # JSON responses (one body per POST) rather than SSE streams: cheaper, and every client
    # accepts them; progress notifications from upstreams are not relayed then.
    json_response: bool = True
    max_body_bytes: int = 1024 * 1024
    # Agent-key lookups are cached this long (seconds): a revoked or expired key stops working
    # within this bound on every replica (the cache is per process).
    key_cache_seconds: float = 5.0
    # How often (seconds) a process re-reads an organization's policy version stamp.
    policy_check_seconds: float = 1.0
    # Upstream calls.
    connect_timeout: float = 10.0
    call_timeout: float = 30.0
    pool_idle_seconds: float = 300.0
    pool_max_clients: int = 256
    # Results larger than this (bytes of JSON) are refused with a clear tool error.
    max_result_bytes: int = 2 * 1024 * 1024
    # Circuit breaker: open after N consecutive failures, half-open after a cool-down.
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0
    # Threads doing database work (auth, audit, policy loads): bounds the DB connections a
    # replica opens.
    db_threads: int = 4
    # httpx2 logs one INFO line per upstream request; off by default (one line per call, the
    # tool.call audit record already says everything it would).
    log_upstream_requests: bool = False


@cache
def gateway_settings() -> GatewaySettings:
    hosts, origins = _hosts_and_origins()
    return GatewaySettings(
        allowed_hosts=hosts,
        allowed_origins=origins,
        check_hosts="*" not in settings.ALLOWED_HOSTS,
        json_response=env_bool("GATEWAY_JSON_RESPONSE", default=True),
        max_body_bytes=env_int("GATEWAY_MAX_BODY_BYTES", 1024 * 1024),
        key_cache_seconds=env_float("GATEWAY_KEY_CACHE_SECONDS", 5.0),
        policy_check_seconds=env_float("GATEWAY_POLICY_CHECK_SECONDS", 1.0),
        connect_timeout=env_float("GATEWAY_CONNECT_TIMEOUT", 10.0),
        call_timeout=env_float("GATEWAY_CALL_TIMEOUT", 30.0),
        pool_idle_seconds=env_float("GATEWAY_POOL_IDLE_SECONDS", 300.0),
        pool_max_clients=env_int("GATEWAY_POOL_MAX_CLIENTS", 256),
        max_result_bytes=env_int("GATEWAY_MAX_RESULT_BYTES", 2 * 1024 * 1024),
        breaker_failures=env_int("GATEWAY_BREAKER_FAILURES", 5),
        breaker_cooldown=env_float("GATEWAY_BREAKER_COOLDOWN", 30.0),
        db_threads=env_int("GATEWAY_DB_THREADS", 4),
        log_upstream_requests=env_bool("GATEWAY_LOG_UPSTREAM_REQUESTS", default=False),
    )


_django_settings: dict[str, Any] = {}


def django_setting(name: str, default: Any = None) -> Any:
    """`settings.<name>` (or `default`), remembered: the gateway reads a few Django settings
    on every call, and each read of `django.conf.settings` runs Python-level attribute
    machinery. Settings do not change while a process runs, except in tests
    (`override_settings`, pytest-django's `settings`), whose `setting_changed` signal makes
    the next read fresh."""
    try:
        return _django_settings[name]
    except KeyError:
        value = _django_settings[name] = getattr(settings, name, default)
        return value


@receiver(setting_changed)
def _forget_setting(*, setting: str, **_kwargs: Any) -> None:
    _django_settings.pop(setting, None)
