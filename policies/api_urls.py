from django.urls import path

from policies import api

# Object ids are named `<model_name>_id`: the generic isolation test fills them with another
# organization's ids and expects 404.
ORG = "orgs/<slug:org_slug>/"

urlpatterns = [
    path(ORG + "policies/", api.PolicyListView.as_view(), name="api-policies"),
    path(ORG + "policies/apply", api.ApplyView.as_view(), name="api-policies-apply"),
    path(ORG + "policies/export", api.ExportView.as_view(), name="api-policies-export"),
    path(ORG + "policies/explain", api.ExplainView.as_view(), name="api-policies-explain"),
    path(ORG + "policies/replay", api.ReplayView.as_view(), name="api-policies-replay"),
    path(ORG + "policies/<int:policy_id>/", api.PolicyDetailView.as_view(), name="api-policy"),
    path(ORG + "tool-groups/", api.ToolGroupListView.as_view(), name="api-tool-groups"),
    path(
        ORG + "tool-groups/<int:toolgroup_id>/",
        api.ToolGroupDetailView.as_view(),
        name="api-tool-group",
    ),
]
