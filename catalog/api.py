"""The catalog REST API under `/api/v1/orgs/<org_slug>/servers/...`: input serializer -> one
service -> output serializer. Objects come from the selectors' access functions (404 for
another organization's ids); permissions come from the role matrix via OrgScopedAPIView and
the services."""

from typing import Any

from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from catalog import selectors, services
from catalog.errors import CatalogError
from catalog.models import (
    AuthMode,
    Classification,
    FetchJob,
    FetchState,
    Server,
    ServerStatus,
    ServerVersion,
    Tool,
    Transport,
)
from credentials.models import OAuthProvider
from tenants.api.base import OrgScopedAPIView, StrictSerializer
from tenants.api.serializers import ErrorSerializer
from tenants.models import Organization, Team, User
from tenants.permissions import Perm

TAG = "catalog"
_ERR = OpenApiResponse(ErrorSerializer, description="The error and what to do about it.")


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    return dict.fromkeys(codes, _ERR)


# --- Serializers -----------------------------------------------------------------------------


class ServerIn(StrictSerializer):
    name = serializers.CharField(max_length=100)
    slug = serializers.RegexField(r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$", max_length=50)
    description = serializers.CharField(max_length=4000, required=False, allow_blank=True)
    purpose = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    owner = serializers.EmailField(required=False, help_text="Email of a member; default: you.")
    team = serializers.CharField(required=False, allow_null=True, help_text="Team slug.")
    tags = serializers.ListField(
        child=serializers.CharField(max_length=40), required=False, max_length=20
    )
    data_classification = serializers.ChoiceField(Classification.choices, required=False)
    sla = serializers.CharField(max_length=200, required=False, allow_blank=True)
    sla_target = serializers.CharField(max_length=50, required=False, allow_blank=True)
    docs_url = serializers.URLField(max_length=500, required=False, allow_blank=True)
    egress_hosts = serializers.ListField(
        child=serializers.CharField(max_length=255), required=False, max_length=50
    )
    dependencies = serializers.ListField(
        child=serializers.CharField(max_length=50), required=False, help_text="Server slugs."
    )
    transport = serializers.ChoiceField(Transport.choices, required=False)
    url = serializers.CharField(max_length=500, required=False, allow_blank=True)
    auth_mode = serializers.ChoiceField(AuthMode.choices, required=False)
    oauth_provider = serializers.CharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=50,
        help_text="Slug of one of the organization's OAuth providers (auth_mode 'oauth'): each "
        "user's own connection to it is sent upstream.",
    )
    static_headers = serializers.DictField(
        child=serializers.CharField(max_length=8000, allow_blank=True),
        required=False,
        allow_null=True,
        help_text="Write-only: stored encrypted; only the names are shown back.",
    )
    command = serializers.CharField(max_length=500, required=False, allow_blank=True)
    args = serializers.ListField(
        child=serializers.CharField(max_length=1000, allow_blank=True, trim_whitespace=False),
        required=False,
        max_length=100,
    )
    env = serializers.DictField(
        child=serializers.CharField(max_length=8000, allow_blank=True),
        required=False,
        allow_null=True,
        help_text="Write-only: stored encrypted; only the names are shown back.",
    )
    working_dir = serializers.CharField(max_length=500, required=False, allow_blank=True)


class ServerUpdateIn(ServerIn):
    name = serializers.CharField(max_length=100, required=False)
    slug = None  # the slug is what agents call: it never changes


class ReasonIn(StrictSerializer):
    reason = serializers.CharField(max_length=2000)


class NoteIn(StrictSerializer):
    note = serializers.CharField(max_length=4000, required=False, allow_blank=True, default="")


class ApproveIn(NoteIn):
    acknowledge_findings = serializers.BooleanField(required=False, default=False)


class RejectIn(StrictSerializer):
    note = serializers.CharField(max_length=4000, allow_blank=True)


class ServerOut(serializers.ModelSerializer):
    owner = serializers.SlugRelatedField(slug_field="email", read_only=True)
    team = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    dependencies = serializers.SlugRelatedField(slug_field="slug", many=True, read_only=True)
    oauth_provider = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    approved_version = serializers.SerializerMethodField()
    connection_changed_since_approval = serializers.BooleanField(read_only=True)

    class Meta:
        model = Server
        fields = [
            "id", "name", "slug", "description", "purpose", "owner", "team", "tags",
            "data_classification", "sla", "sla_target", "docs_url", "egress_hosts",
            "dependencies", "transport", "url", "auth_mode", "oauth_provider",
            "static_header_names", "command",
            "args", "env_names", "working_dir", "status", "status_reason", "approved_version",
            "connection_changed_since_approval", "last_synced_at", "last_sync_error",
            "created_at", "updated_at",
        ]  # fmt: skip

    def get_approved_version(self, obj: Server) -> int | None:
        return obj.approved_version.number if obj.approved_version_id else None


class ToolOut(serializers.ModelSerializer):
    class Meta:
        model = Tool
        fields = [
            "id", "name", "title", "description", "input_schema", "output_schema",
            "annotations", "definition_hash", "quarantined", "quarantined_at", "quarantine_reason",
        ]  # fmt: skip


class ToolSearchOut(ToolOut):
    server = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    qualified_name = serializers.SerializerMethodField()

    class Meta(ToolOut.Meta):
        fields = ["server", "qualified_name", *ToolOut.Meta.fields]

    def get_qualified_name(self, obj: Tool) -> str:
        return f"{obj.server.slug}.{obj.name}"


class FindingOut(serializers.Serializer):
    scanner = serializers.CharField()
    severity = serializers.ChoiceField(["high", "medium", "low"])
    tool = serializers.CharField()
    field = serializers.CharField()
    message = serializers.CharField()
    evidence = serializers.CharField(allow_blank=True)


class VersionOut(serializers.ModelSerializer):
    server = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    submitted_by = serializers.SlugRelatedField(slug_field="email", read_only=True)
    reviewed_by = serializers.SlugRelatedField(slug_field="email", read_only=True)
    findings = FindingOut(many=True, read_only=True)
    tool_count = serializers.SerializerMethodField()

    class Meta:
        model = ServerVersion
        fields = [
            "id", "server", "number", "label", "status", "origin", "config_snapshot",
            "server_info", "tools_digest", "findings", "tool_count", "fetched_at", "created_at",
            "submitted_by", "submitted_at", "reviewed_by", "reviewed_at", "decision_note",
            "findings_acknowledged",
        ]  # fmt: skip

    def get_tool_count(self, obj: ServerVersion) -> int:
        count = getattr(obj, "tool_count", None)
        return count if count is not None else obj.tools.count()


class FetchJobOut(serializers.ModelSerializer):
    server = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    requested_by = serializers.SlugRelatedField(slug_field="email", read_only=True)
    version = serializers.SerializerMethodField()
    state = serializers.ChoiceField(FetchState.choices, read_only=True)

    class Meta:
        model = FetchJob
        fields = [
            "id", "server", "requested_by", "state", "tools_so_far", "version", "error_code",
            "error_message", "consent_url", "created_at", "started_at", "finished_at",
        ]  # fmt: skip

    def get_version(self, obj: FetchJob) -> int | None:
        return obj.version.number if obj.version_id else None


class FetchQueuedOut(serializers.Serializer):
    job = FetchJobOut()
    status_url = serializers.CharField(help_text="GET it until `job.state` is done or failed.")


class DiffChangeOut(serializers.Serializer):
    name = serializers.CharField()
    fields = serializers.ListField(child=serializers.DictField())


class DiffOut(serializers.Serializer):
    against_version = serializers.IntegerField()
    added = serializers.ListField(child=serializers.CharField())
    removed = serializers.ListField(child=serializers.CharField())
    changed = DiffChangeOut(many=True)
    unchanged = serializers.IntegerField()


class VersionDetailOut(VersionOut):
    tools = ToolOut(many=True, read_only=True)
    diff = serializers.SerializerMethodField()

    class Meta(VersionOut.Meta):
        fields = [*VersionOut.Meta.fields, "tools", "diff"]

    @extend_schema_field(DiffOut(allow_null=True))
    def get_diff(self, obj: ServerVersion) -> dict[str, Any] | None:
        diff = selectors.version_diff(version=obj)
        if diff is None:
            return None
        return {
            "against_version": diff["against"].number,
            "added": [t["name"] for t in diff["added"]],
            "removed": [t["name"] for t in diff["removed"]],
            "changed": diff["changed"],
            "unchanged": diff["unchanged"],
        }


# --- Helpers ---------------------------------------------------------------------------------


def _validated(serializer_class: type, request: Request, **kwargs: Any) -> dict[str, Any]:
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _resolve_refs(org: Organization, data: dict[str, Any]) -> dict[str, Any]:
    if "owner" in data:
        owner = User.objects.filter(
            memberships__organization=org, email__iexact=data["owner"]
        ).first()
        if owner is None:
            raise CatalogError(
                f"{data['owner']} is not a member of this organization.", field="owner"
            )
        data["owner"] = owner
    if "team" in data:
        if data["team"] in (None, ""):
            data["team"] = None
        else:
            team = Team.objects.for_org(org).filter(slug=data["team"]).first()
            if team is None:
                raise CatalogError(f"There is no team '{data['team']}' here.", field="team")
            data["team"] = team
    if "oauth_provider" in data:
        if not data["oauth_provider"]:
            data["oauth_provider"] = None
        else:
            provider = (
                OAuthProvider.objects.for_org(org).filter(slug=data["oauth_provider"]).first()
            )
            if provider is None:
                raise CatalogError(
                    f"There is no OAuth provider '{data['oauth_provider']}' here.",
                    field="oauth_provider",
                )
            data["oauth_provider"] = provider
    if "dependencies" in data:
        slugs = data["dependencies"]
        found = list(Server.objects.for_org(org).filter(slug__in=slugs))
        missing = sorted(set(slugs) - {s.slug for s in found})
        if missing:
            raise CatalogError(f"No such servers here: {', '.join(missing)}.", field="dependencies")
        data["dependencies"] = found
    return data


class _Paginated:
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    def page(self, request: Request, queryset: QuerySet, serializer_class: type) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(serializer_class(page, many=True).data)


class _CatalogView(OrgScopedAPIView):
    # Writes are checked in detail by the services (owner or approver, approve permission).
    read_perm = Perm.VIEW_ORG
    write_perm = Perm.SUBMIT_SERVER


# --- Views -----------------------------------------------------------------------------------


class ServerListView(_Paginated, _CatalogView):
    @extend_schema(
        tags=[TAG],
        summary="Servers in the catalog",
        parameters=[
            OpenApiParameter("status", str, enum=ServerStatus.values),
            OpenApiParameter("q", str, description="Filter by name, slug or description."),
        ],
        responses=ServerOut(many=True),
    )
    def get(self, request: Request, org_slug: str) -> Response:
        status_filter = request.query_params.get("status") or None
        if status_filter and status_filter not in ServerStatus.values:
            raise CatalogError(
                f"Status must be one of: {', '.join(ServerStatus.values)}.", field="status"
            )
        qs = selectors.servers_for_org(
            org=self.org, status=status_filter, q=request.query_params.get("q")
        )
        return self.page(request, qs, ServerOut)

    @extend_schema(
        tags=[TAG],
        summary="Register a server (draft)",
        request=ServerIn,
        responses={201: ServerOut, **_errors(400, 403)},
    )
    def post(self, request: Request, org_slug: str) -> Response:
        data = _resolve_refs(self.org, _validated(ServerIn, request))
        server = services.server_create(org=self.org, actor=request.user, **data)
        return Response(ServerOut(server).data, status=status.HTTP_201_CREATED)


class ServerDetailView(_CatalogView):
    @extend_schema(tags=[TAG], summary="A server", responses={200: ServerOut, **_errors(404)})
    def get(self, request: Request, org_slug: str, server_id: int) -> Response:
        return Response(ServerOut(selectors.server_get(org=self.org, id=server_id)).data)

    @extend_schema(
        tags=[TAG],
        summary="Change a server",
        request=ServerUpdateIn,
        responses={200: ServerOut, **_errors(400, 403, 404)},
    )
    def patch(self, request: Request, org_slug: str, server_id: int) -> Response:
        server = selectors.server_get(org=self.org, id=server_id)
        data = _resolve_refs(self.org, _validated(ServerUpdateIn, request, partial=True))
        server = services.server_update(org=self.org, actor=request.user, server=server, **data)
        return Response(ServerOut(selectors.server_get(org=self.org, id=server.pk)).data)


class ServerFetchToolsView(_CatalogView):
    @extend_schema(
        tags=[TAG],
        summary="Fetch the server's tools into its draft version",
        description="Connects to the upstream (bounded by CATALOG_FETCH_TIMEOUT), lists all "
        "its tools, runs the scanners and stores them in the draft version (201). Upstream "
        "failures answer 400 with a `code` (unreachable, timeout, not_mcp, too_large, "
        "too_many_tools, invalid_definitions, egress_refused, sandbox_unavailable, exited, "
        "protocol, auth_required, consent_required, credential_unavailable) and write nothing. "
        "A per-user OAuth server is reached with *your* connection to its provider "
        "(consent_required: connect at the URL in the message first).\n\n"
        "With `?background=true` the fetch runs on a worker instead: 202 with the job and its "
        "`status_url`; poll that until the job's state is `done` or `failed`.",
        parameters=[
            OpenApiParameter(
                "background", bool, description="Queue the fetch and answer 202 at once."
            )
        ],
        request=None,
        responses={201: VersionOut, 202: FetchQueuedOut, **_errors(400, 403, 404)},
    )
    def post(self, request: Request, org_slug: str, server_id: int) -> Response:
        server = selectors.server_get(org=self.org, id=server_id)
        if request.query_params.get("background", "").lower() in ("1", "true", "yes"):
            job = services.fetch_job_start(org=self.org, actor=request.user, server=server)
            url = reverse(
                "api-fetch-job",
                kwargs={"org_slug": self.org.slug, "server_id": server.pk, "fetchjob_id": job.pk},
            )
            job = selectors.fetch_job_get(org=self.org, id=job.pk, server=server)
            return Response(
                {"job": FetchJobOut(job).data, "status_url": request.build_absolute_uri(url)},
                status=status.HTTP_202_ACCEPTED,
            )
        version = services.server_fetch_tools(org=self.org, actor=request.user, server=server)
        return Response(VersionOut(version).data, status=status.HTTP_201_CREATED)


class FetchJobView(_CatalogView):
    @extend_schema(
        tags=[TAG],
        summary="A background fetch's progress and outcome",
        responses={200: FetchJobOut, **_errors(404)},
    )
    def get(self, request: Request, org_slug: str, server_id: int, fetchjob_id: int) -> Response:
        server = selectors.server_get(org=self.org, id=server_id)
        job = selectors.fetch_job_get(org=self.org, id=fetchjob_id, server=server)
        return Response(FetchJobOut(job).data)


class ServerLifecycleView(_CatalogView):
    write_perm = Perm.APPROVE_SERVER
    action_name = ""

    def post(self, request: Request, org_slug: str, server_id: int) -> Response:
        server = selectors.server_get(org=self.org, id=server_id)
        data = _validated(ReasonIn, request)
        service = (
            services.server_deprecate if self.action_name == "deprecate" else services.server_retire
        )
        server = service(org=self.org, actor=request.user, server=server, reason=data["reason"])
        return Response(ServerOut(selectors.server_get(org=self.org, id=server.pk)).data)


class ServerDeprecateView(ServerLifecycleView):
    action_name = "deprecate"

    @extend_schema(
        tags=[TAG],
        summary="Deprecate an approved server (keeps working)",
        request=ReasonIn,
        responses={200: ServerOut, **_errors(400, 403, 404)},
    )
    def post(self, request: Request, org_slug: str, server_id: int) -> Response:
        return super().post(request, org_slug, server_id)


class ServerRetireView(ServerLifecycleView):
    action_name = "retire"

    @extend_schema(
        tags=[TAG],
        summary="Retire a server (its tools stop being served)",
        request=ReasonIn,
        responses={200: ServerOut, **_errors(400, 403, 404)},
    )
    def post(self, request: Request, org_slug: str, server_id: int) -> Response:
        return super().post(request, org_slug, server_id)


class ServerToolsView(_CatalogView):
    @extend_schema(
        tags=[TAG],
        summary="The approved version's tools (with quarantine flags)",
        responses={200: ToolOut(many=True), **_errors(404)},
    )
    def get(self, request: Request, org_slug: str, server_id: int) -> Response:
        server = selectors.server_get(org=self.org, id=server_id)
        if server.approved_version_id is None:
            return Response([])
        tools = selectors.tools_for_version(version=server.approved_version)
        return Response(ToolOut(tools, many=True).data)


class VersionListView(_Paginated, _CatalogView):
    @extend_schema(tags=[TAG], summary="A server's versions", responses=VersionOut(many=True))
    def get(self, request: Request, org_slug: str, server_id: int) -> Response:
        server = selectors.server_get(org=self.org, id=server_id)
        return self.page(request, selectors.versions_for_server(server=server), VersionOut)


class VersionDetailView(_CatalogView):
    @extend_schema(
        tags=[TAG],
        summary="A version with its tools, findings and diff",
        responses={200: VersionDetailOut, **_errors(404)},
    )
    def get(
        self, request: Request, org_slug: str, server_id: int, serverversion_id: int
    ) -> Response:
        server = selectors.server_get(org=self.org, id=server_id)
        version = selectors.version_get(org=self.org, id=serverversion_id, server=server)
        return Response(VersionDetailOut(version).data)


class VersionActionView(_CatalogView):
    def _version(self, server_id: int, serverversion_id: int) -> ServerVersion:
        server = selectors.server_get(org=self.org, id=server_id)
        return selectors.version_get(org=self.org, id=serverversion_id, server=server)


class VersionSubmitView(VersionActionView):
    @extend_schema(
        tags=[TAG],
        summary="Submit a draft version for review",
        request=NoteIn,
        responses={200: VersionOut, **_errors(400, 403, 404)},
    )
    def post(
        self, request: Request, org_slug: str, server_id: int, serverversion_id: int
    ) -> Response:
        version = self._version(server_id, serverversion_id)
        data = _validated(NoteIn, request)
        version = services.version_submit(
            org=self.org, actor=request.user, version=version, note=data["note"]
        )
        return Response(VersionOut(version).data)


class VersionWithdrawView(VersionActionView):
    @extend_schema(
        tags=[TAG],
        summary="Withdraw a submitted version (back to draft; owner or submitter)",
        request=NoteIn,
        responses={200: VersionOut, **_errors(400, 403, 404)},
    )
    def post(
        self, request: Request, org_slug: str, server_id: int, serverversion_id: int
    ) -> Response:
        version = self._version(server_id, serverversion_id)
        data = _validated(NoteIn, request)
        version = services.version_withdraw(
            org=self.org, actor=request.user, version=version, note=data["note"]
        )
        return Response(VersionOut(version).data)


class VersionApproveView(VersionActionView):
    write_perm = Perm.APPROVE_SERVER

    @extend_schema(
        tags=[TAG],
        summary="Approve a submitted version (pins its tool hashes)",
        request=ApproveIn,
        responses={200: VersionOut, **_errors(400, 403, 404)},
    )
    def post(
        self, request: Request, org_slug: str, server_id: int, serverversion_id: int
    ) -> Response:
        version = self._version(server_id, serverversion_id)
        data = _validated(ApproveIn, request)
        version = services.version_approve(
            org=self.org, actor=request.user, version=version, **data
        )
        return Response(VersionOut(version).data)


class VersionRejectView(VersionActionView):
    write_perm = Perm.APPROVE_SERVER

    @extend_schema(
        tags=[TAG],
        summary="Reject a submitted version (a note is required)",
        request=RejectIn,
        responses={200: VersionOut, **_errors(400, 403, 404)},
    )
    def post(
        self, request: Request, org_slug: str, server_id: int, serverversion_id: int
    ) -> Response:
        version = self._version(server_id, serverversion_id)
        data = _validated(RejectIn, request)
        version = services.version_reject(
            org=self.org, actor=request.user, version=version, note=data["note"]
        )
        return Response(VersionOut(version).data)


class ReviewQueueView(_Paginated, _CatalogView):
    @extend_schema(tags=[TAG], summary="Versions awaiting review", responses=VersionOut(many=True))
    def get(self, request: Request, org_slug: str) -> Response:
        return self.page(request, selectors.review_queue(org=self.org), VersionOut)


class ToolSearchView(_CatalogView):
    @extend_schema(
        tags=[TAG],
        summary="Search approved tools",
        parameters=[
            OpenApiParameter("q", str, required=True, description="Words to look for."),
            OpenApiParameter("limit", int, description="1-50, default 20."),
        ],
        responses={200: ToolSearchOut(many=True), **_errors(400)},
    )
    def get(self, request: Request, org_slug: str) -> Response:
        query = request.query_params.get("q", "")
        try:
            limit = int(request.query_params.get("limit", 20))
        except ValueError:
            raise CatalogError("limit must be a number.", field="limit") from None
        if not 1 <= limit <= 50:
            raise CatalogError("limit must be between 1 and 50.", field="limit")
        if not query.strip():
            raise CatalogError("Give some words to search for.", field="q")
        tools = selectors.tool_search(org=self.org, query=query, limit=limit)
        return Response(ToolSearchOut(tools, many=True).data)
