from django.urls import path

from credentials import views

app_name = "credentials"

# Object ids are named `<model_name>_id` for the generic cross-tenant isolation test.
urlpatterns = [
    # The one redirect URI registered at every provider (the state names org and provider).
    path("oauth/callback", views.oauth_callback, name="oauth_callback"),
    path("o/<slug:org_slug>/connections/", views.connections, name="connections"),
    path(
        "o/<slug:org_slug>/connections/providers/<int:oauthprovider_id>/connect/",
        views.connect,
        name="connect",
    ),
    path(
        "o/<slug:org_slug>/connections/<int:connection_id>/disconnect/",
        views.disconnect,
        name="disconnect",
    ),
    path("o/<slug:org_slug>/providers/", views.providers, name="providers"),
    path("o/<slug:org_slug>/providers/new/", views.provider_create, name="provider-create"),
    path("o/<slug:org_slug>/providers/rotation/", views.rotation_status, name="rotation-status"),
    path(
        "o/<slug:org_slug>/providers/<int:oauthprovider_id>/",
        views.provider_edit,
        name="provider-edit",
    ),
    path(
        "o/<slug:org_slug>/providers/<int:oauthprovider_id>/delete/",
        views.provider_delete,
        name="provider-delete",
    ),
]
