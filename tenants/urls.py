from django.urls import path

from tenants import views, views_agents, views_members, views_teams, views_tokens

app_name = "tenants"

# Object ids in URLs are named `<model_name>_id` (membership_id, agentkey_id...): the generic
# cross-tenant isolation test relies on it to fill them with another organization's ids.
urlpatterns = [
    path("", views.home, name="home"),
    path("invite/<str:token>/", views.invitation_accept, name="invitation-accept"),
    path("settings/tokens/", views_tokens.tokens, name="tokens"),
    path(
        "settings/tokens/<int:personalaccesstoken_id>/revoke/",
        views_tokens.token_revoke,
        name="token-revoke",
    ),
    path("o/<slug:org_slug>/", views.dashboard, name="dashboard"),
    # Members and invitations
    path("o/<slug:org_slug>/members/", views_members.members, name="members"),
    path("o/<slug:org_slug>/members/invite/", views_members.invite, name="member-invite"),
    path(
        "o/<slug:org_slug>/members/<int:membership_id>/role/",
        views_members.change_role,
        name="member-role",
    ),
    path(
        "o/<slug:org_slug>/members/<int:membership_id>/remove/",
        views_members.remove_member,
        name="member-remove",
    ),
    path("o/<slug:org_slug>/leave/", views_members.leave, name="leave"),
    path(
        "o/<slug:org_slug>/invitations/<int:invitation_id>/revoke/",
        views_members.revoke_invitation,
        name="invitation-revoke",
    ),
    # Teams
    path("o/<slug:org_slug>/teams/", views_teams.teams, name="teams"),
    path("o/<slug:org_slug>/teams/<int:team_id>/", views_teams.team_detail, name="team-detail"),
    # Agents and keys
    path("o/<slug:org_slug>/agents/", views_agents.agents, name="agents"),
    path("o/<slug:org_slug>/agents/new/", views_agents.agent_create, name="agent-create"),
    path(
        "o/<slug:org_slug>/agents/<int:agent_id>/",
        views_agents.agent_detail,
        name="agent-detail",
    ),
    path(
        "o/<slug:org_slug>/agents/<int:agent_id>/active/",
        views_agents.agent_set_active,
        name="agent-set-active",
    ),
    path(
        "o/<slug:org_slug>/agents/<int:agent_id>/keys/",
        views_agents.agent_key_create,
        name="agent-key-create",
    ),
    path(
        "o/<slug:org_slug>/agents/<int:agent_id>/keys/<int:agentkey_id>/revoke/",
        views_agents.agent_key_revoke,
        name="agent-key-revoke",
    ),
]
