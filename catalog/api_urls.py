"""Catalog REST routes (included under /api/v1/). Object ids are named `<model_name>_id` so the
generic isolation test can fill them with another organization's objects."""

from django.urls import path

from catalog import api

ORG = "orgs/<slug:org_slug>/"
SERVER = ORG + "servers/<int:server_id>/"
VERSION = SERVER + "versions/<int:serverversion_id>/"

urlpatterns = [
    path(ORG + "servers/", api.ServerListView.as_view(), name="api-servers"),
    path(SERVER, api.ServerDetailView.as_view(), name="api-server"),
    path(SERVER + "fetch-tools/", api.ServerFetchToolsView.as_view(), name="api-server-fetch"),
    path(
        SERVER + "fetch-jobs/<int:fetchjob_id>/", api.FetchJobView.as_view(), name="api-fetch-job"
    ),
    path(SERVER + "deprecate/", api.ServerDeprecateView.as_view(), name="api-server-deprecate"),
    path(SERVER + "retire/", api.ServerRetireView.as_view(), name="api-server-retire"),
    path(SERVER + "tools/", api.ServerToolsView.as_view(), name="api-server-tools"),
    path(SERVER + "versions/", api.VersionListView.as_view(), name="api-versions"),
    path(VERSION, api.VersionDetailView.as_view(), name="api-version"),
    path(VERSION + "submit/", api.VersionSubmitView.as_view(), name="api-version-submit"),
    path(VERSION + "withdraw/", api.VersionWithdrawView.as_view(), name="api-version-withdraw"),
    path(VERSION + "approve/", api.VersionApproveView.as_view(), name="api-version-approve"),
    path(VERSION + "reject/", api.VersionRejectView.as_view(), name="api-version-reject"),
    path(ORG + "review-queue/", api.ReviewQueueView.as_view(), name="api-review-queue"),
    path(ORG + "tools/search/", api.ToolSearchView.as_view(), name="api-tool-search"),
]
