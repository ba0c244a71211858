from django.urls import path

from policies import views

app_name = "policies"

urlpatterns = [
    path("o/<slug:org_slug>/policies/", views.policy_list, name="list"),
    path("o/<slug:org_slug>/policies/new/", views.policy_create, name="create"),
    path("o/<slug:org_slug>/policies/validate/", views.policy_validate_new, name="validate-new"),
    path("o/<slug:org_slug>/policies/apply/", views.policy_apply, name="apply"),
    path("o/<slug:org_slug>/policies/export/", views.policy_export, name="export"),
    path("o/<slug:org_slug>/policies/explain/", views.explain, name="explain"),
    path("o/<slug:org_slug>/policies/replay/", views.replay, name="replay"),
    path("o/<slug:org_slug>/policies/groups/", views.group_list, name="groups"),
    path(
        "o/<slug:org_slug>/policies/groups/<int:toolgroup_id>/",
        views.group_edit,
        name="group-edit",
    ),
    path(
        "o/<slug:org_slug>/policies/groups/<int:toolgroup_id>/delete/",
        views.group_delete,
        name="group-delete",
    ),
    path("o/<slug:org_slug>/policies/<int:policy_id>/", views.policy_edit, name="edit"),
    path(
        "o/<slug:org_slug>/policies/<int:policy_id>/validate/",
        views.policy_validate,
        name="validate",
    ),
    path("o/<slug:org_slug>/policies/<int:policy_id>/toggle/", views.policy_toggle, name="toggle"),
    path("o/<slug:org_slug>/policies/<int:policy_id>/delete/", views.policy_delete, name="delete"),
]
