"""Read-only REST API of the audit trail: a keyset-paginated list (cursor = `before` id) with the
same filters as the audit page, and one event. Unknown query parameters are refused (a typo in a
filter name must not silently return everything)."""

from typing import Any
from urllib.parse import urlencode

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from audit.filters import FILTER_FIELDS, AuditFilterForm, form_errors_text
from audit.models import AuditEvent
from audit.selectors import MAX_PAGE_SIZE, PAGE_SIZE, audit_event_get, audit_events_page
from tenants.api.base import OrgScopedAPIView
from tenants.permissions import Perm


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "occurred_at",
            "action",
            "outcome",
            "actor_user_id",
            "actor_label",
            "agent_id",
            "agent_label",
            "on_behalf_of_id",
            "on_behalf_of_label",
            "target_type",
            "target_id",
            "target_label",
            "server",
            "tool",
            "decision",
            "error_class",
            "latency_ms",
            "upstream_latency_ms",
            "details",
            "request_id",
            "source_ip",
        ]
        read_only_fields = fields


_FILTER_PARAMS = [
    OpenApiParameter("since", OpenApiTypes.STR, description="From (UTC), ISO 8601 date or time."),
    OpenApiParameter("until", OpenApiTypes.STR, description="Until (UTC, exclusive)."),
    OpenApiParameter("actor", OpenApiTypes.STR, description="Email of the user who acted."),
    OpenApiParameter("agent", OpenApiTypes.STR, description="Agent slug."),
    OpenApiParameter("on_behalf_of", OpenApiTypes.STR, description="Email of the acting-for user."),
    OpenApiParameter("action", OpenApiTypes.STR, description="Exact action, e.g. tool.call."),
    OpenApiParameter("server", OpenApiTypes.STR),
    OpenApiParameter("tool", OpenApiTypes.STR),
    OpenApiParameter("decision", OpenApiTypes.STR, enum=["allow", "deny"]),
    OpenApiParameter("outcome", OpenApiTypes.STR, enum=["success", "failure", "denied", "error"]),
    OpenApiParameter("error_class", OpenApiTypes.STR),
    OpenApiParameter("request_id", OpenApiTypes.STR),
    OpenApiParameter("q", OpenApiTypes.STR, description="Search in labels, server and tool."),
    OpenApiParameter("before", OpenApiTypes.INT, description="Cursor: events with a smaller id."),
    OpenApiParameter(
        "limit", OpenApiTypes.INT, description=f"1-{MAX_PAGE_SIZE} (default {PAGE_SIZE})."
    ),
]


def _int_param(request: Request, name: str, *, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ValidationError({name: [f"Give a whole number from {low} to {high}."]})
    return int(raw)


class AuditEventListAPI(OrgScopedAPIView):
    read_perm = Perm.READ_AUDIT
    http_method_names = ["get", "head", "options"]

    @extend_schema(
        operation_id="audit_events_list",
        parameters=_FILTER_PARAMS,
        responses=inline_serializer(
            "AuditEventPage",
            {
                "results": AuditEventSerializer(many=True),
                "next": serializers.CharField(allow_null=True),
                "next_before": serializers.IntegerField(allow_null=True),
            },
        ),
    )
    def get(self, request: Request, org_slug: str) -> Response:
        unknown = set(request.query_params) - {*FILTER_FIELDS, "before", "limit"}
        if unknown:
            raise ValidationError({name: ["Unknown filter."] for name in sorted(unknown)})
        form = AuditFilterForm({k: request.query_params.get(k) for k in FILTER_FIELDS})
        if not form.is_valid():
            raise ValidationError(form_errors_text(form))
        before = _int_param(request, "before", low=1, high=2**63 - 1)
        limit = _int_param(request, "limit", low=1, high=MAX_PAGE_SIZE) or PAGE_SIZE
        query = form.to_query()
        page = audit_events_page(org=self.org, query=query, before=before, size=limit)
        next_url = None
        if page.next_before is not None:
            params: dict[str, Any] = {**query.as_params(), "before": page.next_before}
            if limit != PAGE_SIZE:
                params["limit"] = limit
            next_url = request.build_absolute_uri(request.path) + "?" + urlencode(params)
        return Response(
            {
                "results": AuditEventSerializer(page.events, many=True).data,
                "next": next_url,
                "next_before": page.next_before,
            }
        )


class AuditEventDetailAPI(OrgScopedAPIView):
    read_perm = Perm.READ_AUDIT
    http_method_names = ["get", "head", "options"]

    @extend_schema(operation_id="audit_events_retrieve", responses=AuditEventSerializer)
    def get(self, request: Request, org_slug: str, auditevent_id: int) -> Response:
        event = audit_event_get(org=self.org, id=auditevent_id)
        return Response(AuditEventSerializer(event).data)
