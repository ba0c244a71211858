"""The credentials REST API: providers (admins) and the caller's own connections.

input serializer -> one service -> output serializer. Output serializers name every field they
return: no token, no client secret, no vault blob ever leaves through here."""

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from credentials import selectors, services
from credentials.models import Connection, OAuthProvider, TokenAuthMethod
from tenants.api.base import OrgScopedAPIView, StrictSerializer
from tenants.api.serializers import ErrorSerializer
from tenants.permissions import Perm

TAG = "credentials"
_ERR = OpenApiResponse(ErrorSerializer, description="The error and what to do about it.")


class ProviderOut(serializers.ModelSerializer):
    confidential_client = serializers.SerializerMethodField()

    class Meta:
        model = OAuthProvider
        fields = [
            "id",
            "name",
            "slug",
            "issuer",
            "authorization_endpoint",
            "token_endpoint",
            "revocation_endpoint",
            "introspection_endpoint",
            "client_id",
            "token_endpoint_auth_method",
            "confidential_client",
            "scopes",
            "pkce_required",
            "resource",
            "created_at",
            "updated_at",
        ]

    def get_confidential_client(self, obj: OAuthProvider) -> bool:
        return bool(obj.client_secret_blob)


class _ProviderFields(StrictSerializer):
    name = serializers.CharField(max_length=100)
    issuer = serializers.URLField(max_length=500, required=False, allow_blank=True)
    authorization_endpoint = serializers.URLField(max_length=500, required=False, allow_blank=True)
    token_endpoint = serializers.URLField(max_length=500, required=False, allow_blank=True)
    revocation_endpoint = serializers.URLField(max_length=500, required=False, allow_blank=True)
    introspection_endpoint = serializers.URLField(max_length=500, required=False, allow_blank=True)
    client_id = serializers.CharField(max_length=255)
    client_secret = serializers.CharField(
        max_length=1000, required=False, allow_blank=True, write_only=True
    )
    token_endpoint_auth_method = serializers.ChoiceField(
        choices=TokenAuthMethod.choices, required=False
    )
    scopes = serializers.CharField(max_length=1000, required=False, allow_blank=True)
    pkce_required = serializers.BooleanField(required=False)
    resource = serializers.CharField(max_length=500, required=False, allow_blank=True)


class ProviderIn(_ProviderFields):
    slug = serializers.SlugField(max_length=50, required=False, allow_blank=True)


class ProviderPatch(_ProviderFields):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, partial=True, **kwargs)


class ConnectionOut(serializers.ModelSerializer):
    provider = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Connection
        fields = [
            "id",
            "provider",
            "status",
            "scopes",
            "expires_at",
            "last_error",
            "consented_at",
            "consent_client_id",
            "consent_scopes",
            "last_refreshed_at",
        ]


class ProviderListView(OrgScopedAPIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS
    read_perm = Perm.CONNECT_ACCOUNTS
    write_perm = Perm.MANAGE_PROVIDERS

    @extend_schema(tags=[TAG], responses={200: ProviderOut(many=True)})
    def get(self, request: Request, org_slug: str) -> Response:
        return self.paginate(request, selectors.provider_list(org=self.org), ProviderOut)

    @extend_schema(
        tags=[TAG], request=ProviderIn, responses={201: ProviderOut, 400: _ERR, 403: _ERR}
    )
    def post(self, request: Request, org_slug: str) -> Response:
        data = ProviderIn(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        secret = fields.pop("client_secret", "")
        provider = services.provider_create(
            org=self.org, actor=request.user, client_secret=secret, **fields
        )
        return Response(ProviderOut(provider).data, status=status.HTTP_201_CREATED)


class ProviderDetailView(OrgScopedAPIView):
    read_perm = Perm.MANAGE_PROVIDERS
    write_perm = Perm.MANAGE_PROVIDERS

    @extend_schema(tags=[TAG], responses={200: ProviderOut, 404: _ERR})
    def get(self, request: Request, org_slug: str, oauthprovider_id: int) -> Response:
        return Response(ProviderOut(selectors.provider_get(org=self.org, id=oauthprovider_id)).data)

    @extend_schema(tags=[TAG], request=ProviderPatch, responses={200: ProviderOut, 400: _ERR})
    def patch(self, request: Request, org_slug: str, oauthprovider_id: int) -> Response:
        provider = selectors.provider_get(org=self.org, id=oauthprovider_id)
        data = ProviderPatch(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        secret = fields.pop("client_secret", "")
        provider = services.provider_update(
            provider=provider, actor=request.user, client_secret=secret, **fields
        )
        return Response(ProviderOut(provider).data)

    @extend_schema(tags=[TAG], responses={204: None, 404: _ERR})
    def delete(self, request: Request, org_slug: str, oauthprovider_id: int) -> Response:
        provider = selectors.provider_get(org=self.org, id=oauthprovider_id)
        services.provider_delete(provider=provider, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ConnectionListView(OrgScopedAPIView):
    """The caller's own connections in this organization."""

    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS
    read_perm = Perm.CONNECT_ACCOUNTS
    write_perm = Perm.CONNECT_ACCOUNTS

    @extend_schema(tags=[TAG], responses={200: ConnectionOut(many=True)})
    def get(self, request: Request, org_slug: str) -> Response:
        qs = (
            Connection.objects.for_org(self.org)
            .filter(user=request.user)
            .select_related("provider")
            .order_by("pk")
        )
        return self.paginate(request, qs, ConnectionOut)


class ConnectionDetailView(OrgScopedAPIView):
    read_perm = Perm.CONNECT_ACCOUNTS
    write_perm = Perm.CONNECT_ACCOUNTS

    @extend_schema(tags=[TAG], responses={200: ConnectionOut, 404: _ERR})
    def get(self, request: Request, org_slug: str, connection_id: int) -> Response:
        conn = selectors.connection_get(org=self.org, id=connection_id, user=request.user)
        return Response(ConnectionOut(conn).data)

    @extend_schema(
        tags=[TAG],
        description="Disconnect: revoke the grant at the provider (RFC 7009) and delete it. "
        "202 when the provider could not be reached (unusable now, revocation retried).",
        responses={204: None, 202: None, 404: _ERR},
    )
    def delete(self, request: Request, org_slug: str, connection_id: int) -> Response:
        conn = selectors.connection_get(org=self.org, id=connection_id, user=request.user)
        done = services.connection_disconnect(connection=conn, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT if done else status.HTTP_202_ACCEPTED)
