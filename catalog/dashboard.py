"""The catalog's dashboard panel: what is serving, what awaits review, what drifted."""

from typing import Any

from django.http import HttpRequest

from catalog import selectors
from catalog.models import SERVING_STATUSES, Server


def panel_context(request: HttpRequest) -> dict[str, Any] | None:
    org = getattr(request, "org", None)
    if org is None:
        return None
    return {
        "serving": Server.objects.for_org(org).filter(status__in=SERVING_STATUSES).count(),
        "awaiting": selectors.review_queue(org=org).count(),
        "drifted": selectors.drift_attention(org=org).count(),
    }
