"""Liveness and readiness probes for load balancers and orchestrators."""

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving requests."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return type(exc).__name__
    return None


def _check_cache() -> str | None:
    try:
        cache.set("readyz", "1", 5)
        if cache.get("readyz") != "1":
            return "cache did not return the value it stored"
    except Exception as exc:
        return type(exc).__name__
    return None


def _check_broker() -> str | None:
    from config.celery import app

    if settings.CELERY_TASK_ALWAYS_EAGER:
        return None
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return type(exc).__name__
    return None


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Database, cache and broker all answer; 503 naming the failing part otherwise (error class
    names only: connection strings may hold passwords)."""
    checks = {"database": _check_database(), "cache": _check_cache(), "broker": _check_broker()}
    failing = {name: err for name, err in checks.items() if err}
    body = {
        "status": "ok" if not failing else "unavailable",
        "checks": {name: ("ok" if not err else f"failing: {err}") for name, err in checks.items()},
    }
    return JsonResponse(body, status=200 if not failing else 503)
