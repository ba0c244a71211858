from django.urls import path

from credentials import api

ORG = "orgs/<slug:org_slug>/"

# Object ids are named `<model_name>_id` for the generic cross-tenant isolation test.
urlpatterns = [
    path(ORG + "oauth-providers/", api.ProviderListView.as_view(), name="api-oauth-providers"),
    path(
        ORG + "oauth-providers/<int:oauthprovider_id>/",
        api.ProviderDetailView.as_view(),
        name="api-oauth-provider",
    ),
    path(ORG + "connections/", api.ConnectionListView.as_view(), name="api-connections"),
    path(
        ORG + "connections/<int:connection_id>/",
        api.ConnectionDetailView.as_view(),
        name="api-connection",
    ),
]
