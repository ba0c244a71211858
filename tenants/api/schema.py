"""OpenAPI description of our authentication, so /api/schema/ documents how to call the API.
Imported by tenants.api.urls (drf-spectacular registers extensions when they are defined)."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class PersonalAccessTokenScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.api.authentication.PersonalAccessTokenAuthentication"
    name = "personalAccessToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal access token (mgp_...) from /settings/tokens/.",
        }
