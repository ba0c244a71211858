from rest_framework import authentication, exceptions
from rest_framework.request import Request

from tenants.authentication import personal_token_authenticate
from tenants.models import PersonalAccessToken, User


class PersonalAccessTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer mgp_...` for humans using the REST API."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[User, PersonalAccessToken] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise exceptions.AuthenticationFailed(
                "Use 'Authorization: Bearer <personal access token>'."
            )
        token = personal_token_authenticate(value.strip())
        if token is None:
            raise exceptions.AuthenticationFailed("This token is not valid, expired or revoked.")
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
