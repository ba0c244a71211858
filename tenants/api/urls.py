from django.urls import path

from tenants.api import schema, views

# Object ids are named `<model_name>_id`: the generic cross-tenant isolation test fills them
# with another organization's ids and expects 404.
assert schema  # registers the OpenAPI description of our token authentication

ORG = "orgs/<slug:org_slug>/"

urlpatterns = [
    path("orgs/", views.OrgListView.as_view(), name="api-orgs"),
    path(ORG, views.OrgDetailView.as_view(), name="api-org"),
    path(ORG + "members/", views.MemberListView.as_view(), name="api-members"),
    path(ORG + "members/<int:membership_id>/", views.MemberDetailView.as_view(), name="api-member"),
    path(ORG + "invitations/", views.InvitationListView.as_view(), name="api-invitations"),
    path(
        ORG + "invitations/<int:invitation_id>/",
        views.InvitationDetailView.as_view(),
        name="api-invitation",
    ),
    path(ORG + "teams/", views.TeamListView.as_view(), name="api-teams"),
    path(ORG + "teams/<int:team_id>/", views.TeamDetailView.as_view(), name="api-team"),
    path(ORG + "agents/", views.AgentListView.as_view(), name="api-agents"),
    path(ORG + "agents/<int:agent_id>/", views.AgentDetailView.as_view(), name="api-agent"),
    path(
        ORG + "agents/<int:agent_id>/keys/", views.AgentKeyListView.as_view(), name="api-agent-keys"
    ),
    path(ORG + "keys/<int:agentkey_id>/", views.AgentKeyDetailView.as_view(), name="api-agent-key"),
    path("tokens/", views.TokenListView.as_view(), name="api-tokens"),
    path("tokens/<int:personalaccesstoken_id>/", views.TokenDetailView.as_view(), name="api-token"),
]
