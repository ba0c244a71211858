from django.urls import path

from audit import views

app_name = "audit"
urlpatterns = [
    path("metrics", views.prometheus_metrics, name="prometheus"),
    path("o/<slug:org_slug>/audit/", views.audit_list, name="list"),
    path("o/<slug:org_slug>/audit/<int:auditevent_id>/", views.audit_detail, name="detail"),
    path("o/<slug:org_slug>/audit/export/", views.audit_export, name="export"),
    path("o/<slug:org_slug>/audit/exports/", views.audit_export_list, name="exports"),
    path(
        "o/<slug:org_slug>/audit/exports/<int:auditexport_id>/manifest.json",
        views.audit_export_manifest,
        name="export-manifest",
    ),
    path("o/<slug:org_slug>/audit/retention/", views.audit_retention, name="retention"),
    path("o/<slug:org_slug>/audit/metrics/", views.audit_metrics, name="metrics"),
]
