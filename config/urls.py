from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from tenants import views_health

api_v1 = [
    path("", include("tenants.api.urls")),
    path("", include("audit.api_urls")),
    path("", include("credentials.api_urls")),
    path("", include("catalog.api_urls")),
    path("", include("policies.api_urls")),
    path("", include("gateway.api_urls")),
]

urlpatterns = [
    path("healthz", views_health.healthz, name="healthz"),
    path("readyz", views_health.readyz, name="readyz"),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("", include("tenants.urls")),
    path("", include("audit.urls")),
    path("", include("credentials.urls")),
    path("", include("catalog.urls")),
    path("", include("policies.urls")),
    path("", include("gateway.urls")),
]

handler400 = "tenants.views_errors.bad_request"
handler403 = "tenants.views_errors.permission_denied"
handler404 = "tenants.views_errors.page_not_found"
handler500 = "tenants.views_errors.server_error"
