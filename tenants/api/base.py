"""The API's tenant-scoping choke point: every org route is `/api/v1/orgs/<org_slug>/...`, and
`OrgScopedAPIView` resolves the org from the slug against the caller's membership (404 when not a
member), checks the role permission for the HTTP method (403), and exposes `self.org`."""

from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.views import APIView

from tenants.models import Membership, Organization
from tenants.permissions import Perm, role_has
from tenants.selectors import org_membership_for_slug

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class StrictSerializer(serializers.Serializer):
    """Input serializer that rejects unknown fields instead of silently ignoring them."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = set(data) - set(self.fields)
            if unknown:
                raise serializers.ValidationError(
                    {name: ["Unknown field."] for name in sorted(unknown)}
                )
        return super().to_internal_value(data)


class OrgScopedAPIView(APIView):
    read_perm: Perm = Perm.VIEW_ORG
    write_perm: Perm = Perm.MANAGE_ORG
    org: Organization
    membership: Membership

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication first
        self.org, self.membership = org_membership_for_slug(
            user=request.user, slug=kwargs["org_slug"]
        )
        perm = self.read_perm if request.method in SAFE_METHODS else self.write_perm
        if not role_has(self.membership.role, perm):
            raise PermissionDenied(
                f"Your role ({self.membership.get_role_display()}) cannot {perm.value.replace('_', ' ')}."
            )

    def paginate(self, request: Request, queryset: Any, serializer_class: type) -> Any:
        paginator = self.pagination_class() if self.pagination_class else None
        if paginator is None:
            return serializer_class(queryset, many=True).data
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(serializer_class(page, many=True).data)
