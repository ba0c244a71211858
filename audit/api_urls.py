from django.urls import path

from audit.api import AuditEventDetailAPI, AuditEventListAPI

urlpatterns = [
    path(
        "orgs/<slug:org_slug>/audit-events/", AuditEventListAPI.as_view(), name="api-audit-events"
    ),
    path(
        "orgs/<slug:org_slug>/audit-events/<int:auditevent_id>/",
        AuditEventDetailAPI.as_view(),
        name="api-audit-event",
    ),
]
