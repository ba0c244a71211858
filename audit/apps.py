from typing import Any

from django.apps import AppConfig
from django.http import HttpRequest


def _dashboard_panel(request: HttpRequest) -> dict[str, Any] | None:
    from audit.selectors import audit_events_for_org, latest_seal
    from tenants.permissions import Perm, role_has

    membership = getattr(request, "membership", None)
    if membership is None or not role_has(membership.role, Perm.READ_AUDIT):
        return None
    org = request.org  # type: ignore[attr-defined]
    return {
        "events": list(audit_events_for_org(org=org)[:5]),
        "seal": latest_seal(org_id=org.id),
    }


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        # tenants sits below audit in the layering, so it cannot import us: we hand it our recorder.
        from audit.services import record
        from tenants.dashboard import Panel, register_panel
        from tenants.events import register_recorder

        register_recorder(record)
        register_panel(Panel("audit", "audit/dashboard_panel.html", 90, _dashboard_panel))
