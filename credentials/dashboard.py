"""The dashboard panel: tells a member when a grant needs them (re-consent, error)."""

from typing import Any

from django.http import HttpRequest

from tenants.dashboard import Panel, register_panel
from tenants.permissions import Perm, role_has


def _context(request: HttpRequest) -> dict[str, Any] | None:
    from credentials.models import Connection, OAuthProvider
    from credentials.selectors import connections_needing_attention

    org = getattr(request, "org", None)
    membership = getattr(request, "membership", None)
    if org is None or membership is None or not role_has(membership.role, Perm.CONNECT_ACCOUNTS):
        return None
    providers = OAuthProvider.objects.for_org(org).count()
    if not providers:
        return None
    return {
        "org_slug": org.slug,
        "providers": providers,
        "connected": Connection.objects.for_org(org)
        .filter(user=request.user, status="active")
        .count(),
        "attention": list(
            connections_needing_attention(org=org, user=request.user).select_related("provider")
        ),
    }


def register() -> None:
    register_panel(Panel("credentials", "credentials/dashboard_panel.html", 30, _context))
