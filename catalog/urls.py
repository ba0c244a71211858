"""Catalog pages. Object ids are named `<model_name>_id` (the isolation test fills them)."""

from django.urls import path

from catalog import views

app_name = "catalog"

ORG = "o/<slug:org_slug>/"
SERVER = ORG + "servers/<int:server_id>/"
VERSION = SERVER + "versions/<int:serverversion_id>/"

urlpatterns = [
    path(ORG + "servers/", views.server_list, name="server_list"),
    path(ORG + "servers/new/", views.server_create, name="server_create"),
    path(SERVER, views.server_detail, name="server_detail"),
    path(SERVER + "edit/", views.server_edit, name="server_edit"),
    path(SERVER + "fetch/", views.server_fetch, name="server_fetch"),
    path(SERVER + "fetch-jobs/<int:fetchjob_id>/", views.fetch_job_status, name="fetch_job_status"),
    path(SERVER + "deprecate/", views.server_deprecate, name="server_deprecate"),
    path(SERVER + "retire/", views.server_retire, name="server_retire"),
    path(VERSION, views.version_detail, name="version_detail"),
    path(VERSION + "submit/", views.version_submit, name="version_submit"),
    path(VERSION + "withdraw/", views.version_withdraw, name="version_withdraw"),
    path(VERSION + "approve/", views.version_approve, name="version_approve"),
    path(VERSION + "reject/", views.version_reject, name="version_reject"),
    path(ORG + "reviews/", views.review_queue, name="review_queue"),
    path(ORG + "tools/", views.tool_search, name="tool_search"),
]
