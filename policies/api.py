"""The policies REST API under `/api/v1/orgs/<org_slug>/`: policies, tool groups, apply (with a
dry-run flag), export, explain and replay. Reading needs `read_policy`, writing `edit_policy`.

Each view: input serializer -> one service or selector -> output serializer. A refused
document answers 400 with `errors` keyed by location in the document (as every other 400 of
this API is keyed by field) and `problems`, the same list with lines and severities.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from policies import selectors, services
from policies.document import MAX_DOCUMENT_BYTES
from policies.errors import PolicyError, ValidationError
from policies.models import Policy, ToolGroup
from policies.replay import (
    DEFAULT_MAX_ROWS,
    MAX_ROWS_LIMIT,
    Explanation,
    ReplayResult,
    policy_explain,
    policy_replay,
)
from policies.specs import policy_yaml
from tenants.api.base import OrgScopedAPIView, StrictSerializer
from tenants.errors import DomainError
from tenants.models import Agent
from tenants.permissions import Perm

TAG = "policies"

# --------------------------------------------------------------------------- serializers


class ProblemOut(serializers.Serializer):
    location = serializers.CharField()
    message = serializers.CharField()
    line = serializers.IntegerField(allow_null=True)
    severity = serializers.CharField()


class PolicyErrorOut(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
    problems = ProblemOut(many=True)


_ERR = OpenApiResponse(PolicyErrorOut, description="What is wrong, located in the document.")


def _problem(p: ValidationError) -> dict[str, Any]:
    return {
        "location": p.location or "(document)",
        "message": p.message,
        "line": p.line,
        "severity": p.severity,
    }


def _problems_response(problems: list[ValidationError], detail: str) -> Response:
    errors: dict[str, list[str]] = {}
    for p in problems:
        text = p.message + (f" (line {p.line})" if p.line else "")
        errors.setdefault(p.location or "(document)", []).append(text)
    return Response(
        {
            "detail": detail,
            "code": "invalid_policy",
            "errors": errors,
            "problems": [_problem(p) for p in problems],
        },
        status=status.HTTP_400_BAD_REQUEST,
    )


def _policy_error(exc: PolicyError) -> Response:
    problems = list(getattr(exc, "errors", []) or [ValidationError("", exc.message)])
    return _problems_response(problems, "The policy was refused; nothing changed.")


def _validated(serializer_class: type, request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _yaml_field(**kwargs: Any) -> serializers.CharField:
    return serializers.CharField(
        max_length=MAX_DOCUMENT_BYTES, trim_whitespace=False, allow_blank=False, **kwargs
    )


class PolicyOut(serializers.ModelSerializer):
    yaml = serializers.SerializerMethodField()
    updated_by = serializers.EmailField(source="updated_by.email", allow_null=True, default=None)

    class Meta:
        model = Policy
        fields = [
            "id",
            "name",
            "description",
            "enabled",
            "revision",
            "spec",
            "yaml",
            "created_at",
            "updated_at",
            "updated_by",
        ]

    @extend_schema_field(serializers.CharField())
    def get_yaml(self, policy: Policy) -> str:
        return policy_yaml(policy)


class PolicyIn(StrictSerializer):
    yaml = _yaml_field(help_text="One policy in the YAML format (short form).")
    enabled = serializers.BooleanField(required=False)


class PolicyPatchIn(StrictSerializer):
    yaml = _yaml_field(required=False)
    enabled = serializers.BooleanField(required=False)


class ToolGroupOut(serializers.ModelSerializer):
    class Meta:
        model = ToolGroup
        fields = ["id", "slug", "name", "description", "tools", "revision", "updated_at"]


class ToolGroupIn(StrictSerializer):
    slug = serializers.CharField(max_length=100)
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    description = serializers.CharField(
        max_length=4000, required=False, allow_blank=True, default=""
    )
    tools = serializers.ListField(
        child=serializers.CharField(max_length=200), max_length=5000, allow_empty=True
    )


class ApplyIn(StrictSerializer):
    yaml = _yaml_field()
    dry_run = serializers.BooleanField(default=True)
    prune = serializers.BooleanField(
        default=False, help_text="Delete the policies and groups the document does not name."
    )


class ApplyOut(serializers.Serializer):
    applied = serializers.BooleanField()
    dry_run = serializers.BooleanField()
    diff = serializers.ListField(child=serializers.CharField())
    changes = serializers.ListField(child=serializers.CharField())
    warnings = ProblemOut(many=True)


class ExportOut(serializers.Serializer):
    yaml = serializers.CharField()
    policy_version = serializers.IntegerField()


class ExplainIn(StrictSerializer):
    agent = serializers.CharField(max_length=100, help_text="The agent's slug.")
    tool = serializers.CharField(max_length=300, help_text="The exposed name: server.tool")
    arguments = serializers.DictField(required=False, default=dict)
    toolset = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    yaml = _yaml_field(required=False, help_text="Explain against this proposed document.")


class ExplainOut(serializers.Serializer):
    allowed = serializers.BooleanField()
    verdict = serializers.CharField()
    reasons = serializers.ListField(child=serializers.CharField())
    matched_rules = serializers.ListField(child=serializers.CharField())
    effective_arguments = serializers.DictField()
    pins = serializers.ListField(child=serializers.CharField())
    limits = serializers.ListField(child=serializers.CharField())
    real_tool = serializers.CharField(allow_null=True)
    policy_version = serializers.CharField()


class ReplayIn(StrictSerializer):
    yaml = _yaml_field()
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    max_rows = serializers.IntegerField(
        min_value=1, max_value=MAX_ROWS_LIMIT, default=DEFAULT_MAX_ROWS
    )
    prune = serializers.BooleanField(default=False)


class FlipOut(serializers.Serializer):
    event_id = serializers.IntegerField()
    occurred_at = serializers.DateTimeField()
    agent = serializers.CharField()
    tool = serializers.CharField()
    was_allowed = serializers.BooleanField()
    now_allowed = serializers.BooleanField()
    reason = serializers.CharField()


class CountOut(serializers.Serializer):
    agent = serializers.CharField()
    tool = serializers.CharField()
    direction = serializers.CharField()
    calls = serializers.IntegerField()


class ReplayOut(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    scanned = serializers.IntegerField()
    max_rows = serializers.IntegerField()
    truncated = serializers.BooleanField()
    skipped = serializers.IntegerField()
    to_denied = serializers.IntegerField()
    to_allowed = serializers.IntegerField()
    flips = FlipOut(many=True)
    counts = CountOut(many=True)


# --------------------------------------------------------------------------- views


class _PolicyView(OrgScopedAPIView):
    read_perm = Perm.READ_POLICY
    write_perm = Perm.EDIT_POLICY
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, PolicyError):
            return _policy_error(exc)
        return super().handle_exception(exc)


class PolicyListView(_PolicyView):
    @extend_schema(tags=[TAG], summary="Policies", responses=PolicyOut(many=True))
    def get(self, request: Request, org_slug: str) -> Response:
        return self.paginate(request, selectors.policies_for_org(org=self.org), PolicyOut)

    @extend_schema(
        tags=[TAG],
        summary="Create a policy from its YAML",
        request=PolicyIn,
        responses={201: PolicyOut, 400: _ERR, 403: _ERR},
    )
    def post(self, request: Request, org_slug: str) -> Response:
        data = _validated(PolicyIn, request)
        policy = services.policy_save(
            org=self.org,
            actor=request.user,
            text=data["yaml"],
            enabled=data.get("enabled"),
            source="api",
        )
        return Response(PolicyOut(policy).data, status=status.HTTP_201_CREATED)


class PolicyDetailView(_PolicyView):
    @extend_schema(tags=[TAG], summary="A policy", responses={200: PolicyOut, 404: _ERR})
    def get(self, request: Request, org_slug: str, policy_id: int) -> Response:
        return Response(PolicyOut(selectors.policy_get(org=self.org, id=policy_id)).data)

    @extend_schema(
        tags=[TAG],
        summary="Replace a policy's YAML (and optionally enable or disable it)",
        request=PolicyIn,
        responses={200: PolicyOut, 400: _ERR, 403: _ERR, 404: _ERR},
    )
    def put(self, request: Request, org_slug: str, policy_id: int) -> Response:
        policy = selectors.policy_get(org=self.org, id=policy_id)
        data = _validated(PolicyIn, request)
        policy = services.policy_save(
            org=self.org,
            actor=request.user,
            policy=policy,
            text=data["yaml"],
            enabled=data.get("enabled"),
            source="api",
        )
        return Response(PolicyOut(policy).data)

    @extend_schema(
        tags=[TAG],
        summary="Change a policy's YAML and/or enable or disable it",
        request=PolicyPatchIn,
        responses={200: PolicyOut, 400: _ERR, 403: _ERR, 404: _ERR},
    )
    def patch(self, request: Request, org_slug: str, policy_id: int) -> Response:
        policy = selectors.policy_get(org=self.org, id=policy_id)
        data = _validated(PolicyPatchIn, request)
        if "yaml" in data:
            policy = services.policy_save(
                org=self.org,
                actor=request.user,
                policy=policy,
                text=data["yaml"],
                enabled=data.get("enabled"),
                source="api",
            )
        elif "enabled" in data:
            policy = services.policy_set_enabled(
                org=self.org,
                actor=request.user,
                policy=policy,
                enabled=data["enabled"],
                source="api",
            )
        return Response(PolicyOut(policy).data)

    @extend_schema(
        tags=[TAG], summary="Delete a policy", responses={204: None, 403: _ERR, 404: _ERR}
    )
    def delete(self, request: Request, org_slug: str, policy_id: int) -> Response:
        policy = selectors.policy_get(org=self.org, id=policy_id)
        services.policy_delete(org=self.org, actor=request.user, policy=policy, source="api")
        return Response(status=status.HTTP_204_NO_CONTENT)


class ToolGroupListView(_PolicyView):
    @extend_schema(tags=[TAG], summary="Tool groups", responses=ToolGroupOut(many=True))
    def get(self, request: Request, org_slug: str) -> Response:
        return self.paginate(request, selectors.tool_groups_for_org(org=self.org), ToolGroupOut)

    @extend_schema(
        tags=[TAG],
        summary="Create a tool group",
        request=ToolGroupIn,
        responses={201: ToolGroupOut, 400: _ERR, 403: _ERR},
    )
    def post(self, request: Request, org_slug: str) -> Response:
        data = _validated(ToolGroupIn, request)
        group = services.tool_group_save(org=self.org, actor=request.user, source="api", **data)
        return Response(ToolGroupOut(group).data, status=status.HTTP_201_CREATED)


class ToolGroupDetailView(_PolicyView):
    @extend_schema(tags=[TAG], summary="A tool group", responses={200: ToolGroupOut, 404: _ERR})
    def get(self, request: Request, org_slug: str, toolgroup_id: int) -> Response:
        return Response(ToolGroupOut(selectors.tool_group_get(org=self.org, id=toolgroup_id)).data)

    @extend_schema(
        tags=[TAG],
        summary="Replace a tool group",
        request=ToolGroupIn,
        responses={200: ToolGroupOut, 400: _ERR, 403: _ERR, 404: _ERR},
    )
    def put(self, request: Request, org_slug: str, toolgroup_id: int) -> Response:
        group = selectors.tool_group_get(org=self.org, id=toolgroup_id)
        data = _validated(ToolGroupIn, request)
        group = services.tool_group_save(
            org=self.org, actor=request.user, group=group, source="api", **data
        )
        return Response(ToolGroupOut(group).data)

    @extend_schema(
        tags=[TAG],
        summary="Delete a tool group (refused while a policy uses it)",
        responses={204: None, 400: _ERR, 403: _ERR, 404: _ERR},
    )
    def delete(self, request: Request, org_slug: str, toolgroup_id: int) -> Response:
        group = selectors.tool_group_get(org=self.org, id=toolgroup_id)
        services.tool_group_delete(org=self.org, actor=request.user, group=group, source="api")
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApplyView(_PolicyView):
    # A dry run is a read: an auditor may check a document. Applying needs edit_policy, which
    # the service checks once the flag is known.
    write_perm = Perm.READ_POLICY

    @extend_schema(
        tags=[TAG],
        summary="Validate a policy document, diff it against what is live, and apply it",
        description="`dry_run` defaults to true: nothing is written unless it is false. The "
        "groups and policies in the document are created or replaced atomically.",
        request=ApplyIn,
        responses={200: ApplyOut, 400: _ERR, 403: _ERR},
    )
    def post(self, request: Request, org_slug: str) -> Response:
        data = _validated(ApplyIn, request)
        result = services.policy_apply(
            org=self.org,
            actor=request.user,
            text=data["yaml"],
            dry_run=data["dry_run"],
            prune=data["prune"],
            source="api",
        )
        if result.errors:
            return _problems_response(result.errors, "The document has errors; nothing changed.")
        return Response(
            {
                "applied": result.applied,
                "dry_run": result.dry_run,
                "diff": result.diff,
                "changes": result.changes,
                "warnings": [_problem(w) for w in result.warnings],
            }
        )


class ExportView(_PolicyView):
    @extend_schema(
        tags=[TAG], summary="The organization's policies and groups as YAML", responses=ExportOut
    )
    def get(self, request: Request, org_slug: str) -> Response:
        return Response(
            {
                "yaml": services.policy_export(org=self.org),
                "policy_version": self.org.policy_version,
            }
        )


def _agent(org: Any, slug: str) -> Agent:
    agent = (
        Agent.objects.for_org(org).select_related("team", "acting_for").filter(slug=slug).first()
    )
    if agent is None:
        raise DomainError(f"There is no agent '{slug}' in this organization.", field="agent")
    return agent


def _explanation(explanation: Explanation) -> dict[str, Any]:
    return ExplainOut(explanation).data


class ExplainView(_PolicyView):
    write_perm = Perm.READ_POLICY  # a POST that only reads

    @extend_schema(
        tags=[TAG],
        summary="May this agent call this tool with these arguments? (with the reasons)",
        request=ExplainIn,
        responses={200: ExplainOut, 400: _ERR, 403: _ERR},
    )
    def post(self, request: Request, org_slug: str) -> Response:
        data = _validated(ExplainIn, request)
        explanation = policy_explain(
            org=self.org,
            agent=_agent(self.org, data["agent"]),
            tool=data["tool"],
            arguments=data["arguments"],
            proposed_text=data.get("yaml"),
            toolset=data["toolset"] or None,
        )
        if explanation.errors:
            return _problems_response(explanation.errors, "The proposed document has errors.")
        return Response(_explanation(explanation))


class ReplayView(_PolicyView):
    write_perm = Perm.READ_POLICY  # a POST that only reads

    @extend_schema(
        tags=[TAG],
        summary="Replay a proposed document against recorded tool calls",
        description="Lists the calls of the period whose decision would flip, with counts per "
        "agent and tool. Scans at most `max_rows` calls (newest first); `truncated` says when "
        "it stopped early.",
        request=ReplayIn,
        responses={200: ReplayOut, 400: _ERR, 403: _ERR},
    )
    def post(self, request: Request, org_slug: str) -> Response:
        data = _validated(ReplayIn, request)
        result: ReplayResult = policy_replay(
            org=self.org,
            text=data["yaml"],
            since=data.get("since"),
            until=data.get("until"),
            max_rows=data["max_rows"],
            prune=data["prune"],
        )
        if result.errors:
            return _problems_response(result.errors, "Nothing was replayed.")
        return Response(ReplayOut(result).data)
