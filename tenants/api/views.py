"""The tenants REST API. Each view: input serializer -> one service -> output serializer.

Organization routes live under `orgs/<org_slug>/` and go through OrgScopedAPIView, which
resolves the org from the caller's memberships (404 for strangers) and checks the role
permission of the HTTP method (403). Objects are fetched through the selectors' access
functions, so another organization's id answers 404.
"""

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from tenants import services
from tenants.api import serializers as s
from tenants.api.base import OrgScopedAPIView
from tenants.errors import TenantError
from tenants.models import AgentKey, Membership, Organization, Team, User
from tenants.permissions import Perm
from tenants.selectors import (
    agent_get,
    agent_keys_for_agent,
    agents_for_org,
    invitation_get,
    invitations_for_org,
    member_get,
    members_for_org,
    team_get,
    teams_for_org,
    token_get,
    tokens_for_user,
)

TAG = "tenants"
_ERR = OpenApiResponse(s.ErrorSerializer, description="The error and what to do about it.")
_ERRORS: dict[int, OpenApiResponse] = {400: _ERR, 403: _ERR, 404: _ERR}


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: _ERRORS[code] for code in codes}


def _validated(serializer_class: type, request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class _Paginated:
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    def page(self, request: Request, queryset: QuerySet, serializer_class: type) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(serializer_class(page, many=True).data)


# Resolving references given by name (emails, slugs) within the organization: a name from
# another organization is simply "not found" here.


def _member_user(org: Organization, email: str, field: str) -> User:
    user = User.objects.filter(memberships__organization=org, email__iexact=email).first()
    if user is None:
        raise TenantError(f"{email} is not a member of this organization.", field=field)
    return user


def _team_by_slug(org: Organization, slug: str) -> Team:
    team = Team.objects.for_org(org).filter(slug=slug).first()
    if team is None:
        raise TenantError(f"There is no team '{slug}' in this organization.", field="team")
    return team


def _agent_refs(org: Organization, data: dict[str, Any]) -> dict[str, Any]:
    if data.get("acting_for") is not None:
        data["acting_for"] = _member_user(org, data["acting_for"], "acting_for")
    if data.get("team") is not None:
        data["team"] = _team_by_slug(org, data["team"])
    return data


# --- Organizations ---------------------------------------------------------------------------


class OrgListView(_Paginated, APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(tags=[TAG], summary="Your organizations", responses=s.OrgOut(many=True))
    def get(self, request: Request) -> Response:
        memberships = (
            Membership.objects.filter(user=request.user)
            .select_related("organization")
            .order_by("organization__name")
        )
        return self.page(request, memberships, s.OrgOut)

    @extend_schema(
        tags=[TAG],
        summary="Create an organization (you become its owner)",
        request=s.OrgCreateIn,
        responses={201: s.OrgOut, **_errors(400)},
    )
    def post(self, request: Request) -> Response:
        org = services.org_create(owner=request.user, **_validated(s.OrgCreateIn, request))
        membership = Membership.objects.get(organization=org, user=request.user)
        return Response(s.OrgOut(membership).data, status=status.HTTP_201_CREATED)


class OrgDetailView(OrgScopedAPIView):
    @extend_schema(tags=[TAG], summary="An organization", responses={200: s.OrgOut, **_errors(404)})
    def get(self, request: Request, org_slug: str) -> Response:
        return Response(s.OrgOut(self.membership).data)


# --- Members ---------------------------------------------------------------------------------


class MemberListView(_Paginated, OrgScopedAPIView):
    @extend_schema(tags=[TAG], summary="Members", responses=s.MembershipOut(many=True))
    def get(self, request: Request, org_slug: str) -> Response:
        return self.page(request, members_for_org(org=self.org), s.MembershipOut)


class MemberDetailView(OrgScopedAPIView):
    # Any member may DELETE their own membership (leave); the service requires manage_members
    # for changing roles and removing others, so the view lets every member through to it.
    write_perm = Perm.VIEW_ORG

    @extend_schema(tags=[TAG], summary="A member", responses={200: s.MembershipOut, **_errors(404)})
    def get(self, request: Request, org_slug: str, membership_id: int) -> Response:
        return Response(s.MembershipOut(member_get(org=self.org, id=membership_id)).data)

    @extend_schema(
        tags=[TAG],
        summary="Change a member's role",
        request=s.MembershipPatchIn,
        responses={200: s.MembershipOut, **_errors(400, 403, 404)},
    )
    def patch(self, request: Request, org_slug: str, membership_id: int) -> Response:
        membership = member_get(org=self.org, id=membership_id)
        data = _validated(s.MembershipPatchIn, request)
        membership = services.membership_change_role(
            org=self.org, actor=request.user, membership=membership, role=data["role"]
        )
        return Response(s.MembershipOut(membership).data)

    @extend_schema(
        tags=[TAG],
        summary="Remove a member (or leave, with your own membership)",
        request=None,
        responses={204: None, **_errors(400, 403, 404)},
    )
    def delete(self, request: Request, org_slug: str, membership_id: int) -> Response:
        membership = member_get(org=self.org, id=membership_id)
        services.membership_remove(org=self.org, actor=request.user, membership=membership)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Invitations -----------------------------------------------------------------------------


class InvitationListView(_Paginated, OrgScopedAPIView):
    write_perm = Perm.MANAGE_MEMBERS

    @extend_schema(tags=[TAG], summary="Invitations", responses=s.InvitationOut(many=True))
    def get(self, request: Request, org_slug: str) -> Response:
        return self.page(request, invitations_for_org(org=self.org), s.InvitationOut)

    @extend_schema(
        tags=[TAG],
        summary="Invite someone (returns the accept link once; also mailed)",
        request=s.InvitationCreateIn,
        responses={201: s.InvitationCreatedOut, **_errors(400, 403)},
    )
    def post(self, request: Request, org_slug: str) -> Response:
        invitation, url = services.invitation_create(
            org=self.org, actor=request.user, **_validated(s.InvitationCreateIn, request)
        )
        body = {**s.InvitationOut(invitation).data, "accept_url": url}
        return Response(body, status=status.HTTP_201_CREATED)


class InvitationDetailView(OrgScopedAPIView):
    write_perm = Perm.MANAGE_MEMBERS

    @extend_schema(
        tags=[TAG], summary="An invitation", responses={200: s.InvitationOut, **_errors(404)}
    )
    def get(self, request: Request, org_slug: str, invitation_id: int) -> Response:
        return Response(s.InvitationOut(invitation_get(org=self.org, id=invitation_id)).data)

    @extend_schema(
        tags=[TAG],
        summary="Revoke an invitation",
        request=None,
        responses={200: s.InvitationOut, **_errors(400, 403, 404)},
    )
    def delete(self, request: Request, org_slug: str, invitation_id: int) -> Response:
        invitation = invitation_get(org=self.org, id=invitation_id)
        invitation = services.invitation_revoke(
            org=self.org, actor=request.user, invitation=invitation
        )
        return Response(s.InvitationOut(invitation).data)


# --- Teams -----------------------------------------------------------------------------------


class TeamListView(_Paginated, OrgScopedAPIView):
    write_perm = Perm.MANAGE_TEAMS

    @extend_schema(tags=[TAG], summary="Teams", responses=s.TeamOut(many=True))
    def get(self, request: Request, org_slug: str) -> Response:
        return self.page(request, teams_for_org(org=self.org), s.TeamOut)

    @extend_schema(
        tags=[TAG],
        summary="Create a team",
        request=s.TeamCreateIn,
        responses={201: s.TeamOut, **_errors(400, 403)},
    )
    def post(self, request: Request, org_slug: str) -> Response:
        team = services.team_create(
            org=self.org, actor=request.user, **_validated(s.TeamCreateIn, request)
        )
        return Response(s.TeamOut(team).data, status=status.HTTP_201_CREATED)


class TeamDetailView(OrgScopedAPIView):
    write_perm = Perm.MANAGE_TEAMS

    @extend_schema(tags=[TAG], summary="A team", responses={200: s.TeamOut, **_errors(404)})
    def get(self, request: Request, org_slug: str, team_id: int) -> Response:
        return Response(s.TeamOut(team_get(org=self.org, id=team_id)).data)

    @extend_schema(
        tags=[TAG],
        summary="Set a team's members",
        request=s.TeamPatchIn,
        responses={200: s.TeamOut, **_errors(400, 403, 404)},
    )
    def patch(self, request: Request, org_slug: str, team_id: int) -> Response:
        team = team_get(org=self.org, id=team_id)
        emails = sorted({e.lower() for e in _validated(s.TeamPatchIn, request)["members"]})
        users = list(
            User.objects.filter(memberships__organization=self.org, email__in=emails).distinct()
        )
        strangers = sorted(set(emails) - {u.email.lower() for u in users})
        if strangers:
            raise TenantError(
                f"Not members of this organization: {', '.join(strangers)}.", field="members"
            )
        team = services.team_set_members(org=self.org, actor=request.user, team=team, users=users)
        return Response(s.TeamOut(team_get(org=self.org, id=team.pk)).data)


# --- Agents ----------------------------------------------------------------------------------


class AgentListView(_Paginated, OrgScopedAPIView):
    write_perm = Perm.MANAGE_AGENTS

    @extend_schema(tags=[TAG], summary="Agents", responses=s.AgentOut(many=True))
    def get(self, request: Request, org_slug: str) -> Response:
        return self.page(request, agents_for_org(org=self.org), s.AgentOut)

    @extend_schema(
        tags=[TAG],
        summary="Create an agent",
        request=s.AgentCreateIn,
        responses={201: s.AgentOut, **_errors(400, 403)},
    )
    def post(self, request: Request, org_slug: str) -> Response:
        data = _agent_refs(self.org, _validated(s.AgentCreateIn, request))
        agent = services.agent_create(org=self.org, actor=request.user, **data)
        return Response(s.AgentOut(agent).data, status=status.HTTP_201_CREATED)


class AgentDetailView(OrgScopedAPIView):
    write_perm = Perm.MANAGE_AGENTS

    @extend_schema(tags=[TAG], summary="An agent", responses={200: s.AgentOut, **_errors(404)})
    def get(self, request: Request, org_slug: str, agent_id: int) -> Response:
        return Response(s.AgentOut(agent_get(org=self.org, id=agent_id)).data)

    @extend_schema(
        tags=[TAG],
        summary="Change an agent (name, description, acting_for, team, tags, is_active)",
        request=s.AgentPatchIn,
        responses={200: s.AgentOut, **_errors(400, 403, 404)},
    )
    def patch(self, request: Request, org_slug: str, agent_id: int) -> Response:
        agent = agent_get(org=self.org, id=agent_id)
        data = _agent_refs(self.org, _validated(s.AgentPatchIn, request))
        services.agent_update(org=self.org, actor=request.user, agent=agent, **data)
        return Response(s.AgentOut(agent_get(org=self.org, id=agent.pk)).data)

    @extend_schema(
        tags=[TAG],
        summary="Disable an agent (its keys are refused until it is enabled again)",
        request=None,
        responses={200: s.AgentOut, **_errors(403, 404)},
    )
    def delete(self, request: Request, org_slug: str, agent_id: int) -> Response:
        agent = agent_get(org=self.org, id=agent_id)
        services.agent_update(org=self.org, actor=request.user, agent=agent, is_active=False)
        return Response(s.AgentOut(agent_get(org=self.org, id=agent.pk)).data)


# --- Agent keys ------------------------------------------------------------------------------


class AgentKeyListView(_Paginated, OrgScopedAPIView):
    write_perm = Perm.MANAGE_AGENTS

    @extend_schema(tags=[TAG], summary="An agent's keys", responses=s.AgentKeyOut(many=True))
    def get(self, request: Request, org_slug: str, agent_id: int) -> Response:
        agent = agent_get(org=self.org, id=agent_id)
        keys = agent_keys_for_agent(agent=agent).select_related("agent")
        return self.page(request, keys, s.AgentKeyOut)

    @extend_schema(
        tags=[TAG],
        summary="Issue a key (the plaintext is returned once)",
        request=s.AgentKeyCreateIn,
        responses={201: s.AgentKeyCreatedOut, **_errors(400, 403, 404)},
    )
    def post(self, request: Request, org_slug: str, agent_id: int) -> Response:
        agent = agent_get(org=self.org, id=agent_id)
        data = _validated(s.AgentKeyCreateIn, request)
        key, plaintext = services.agent_key_create(
            org=self.org, actor=request.user, agent=agent, **data
        )
        body = {
            **s.AgentKeyOut(key).data,
            "key": plaintext,
            "mcp_url": f"{settings.SITE_URL}/mcp/{self.org.slug}/",
        }
        return Response(body, status=status.HTTP_201_CREATED)


def _key_get(org: Organization, agentkey_id: int) -> AgentKey:
    # Through the scoping choke point: another organization's key is a 404.
    return AgentKey.objects.select_related("agent").get_for_org_or_404(org, pk=agentkey_id)  # type: ignore[return-value]


class AgentKeyDetailView(OrgScopedAPIView):
    write_perm = Perm.MANAGE_AGENTS

    @extend_schema(tags=[TAG], summary="A key", responses={200: s.AgentKeyOut, **_errors(404)})
    def get(self, request: Request, org_slug: str, agentkey_id: int) -> Response:
        return Response(s.AgentKeyOut(_key_get(self.org, agentkey_id)).data)

    @extend_schema(
        tags=[TAG],
        summary="Revoke a key",
        request=None,
        responses={200: s.AgentKeyOut, **_errors(400, 403, 404)},
    )
    def delete(self, request: Request, org_slug: str, agentkey_id: int) -> Response:
        key = _key_get(self.org, agentkey_id)
        key = services.agent_key_revoke(org=self.org, actor=request.user, key=key)
        return Response(s.AgentKeyOut(key).data)


# --- Personal access tokens ------------------------------------------------------------------


class TokenListView(_Paginated, APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=[TAG], summary="Your personal access tokens", responses=s.TokenOut(many=True)
    )
    def get(self, request: Request) -> Response:
        return self.page(request, tokens_for_user(user=request.user), s.TokenOut)

    @extend_schema(
        tags=[TAG],
        summary="Create a personal access token (the plaintext is returned once)",
        request=s.TokenCreateIn,
        responses={201: s.TokenCreatedOut, **_errors(400)},
    )
    def post(self, request: Request) -> Response:
        token, plaintext = services.personal_token_create(
            user=request.user, **_validated(s.TokenCreateIn, request)
        )
        return Response(
            {**s.TokenOut(token).data, "token": plaintext}, status=status.HTTP_201_CREATED
        )


class TokenDetailView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=[TAG], summary="One of your tokens", responses={200: s.TokenOut, **_errors(404)}
    )
    def get(self, request: Request, personalaccesstoken_id: int) -> Response:
        return Response(s.TokenOut(token_get(user=request.user, id=personalaccesstoken_id)).data)

    @extend_schema(
        tags=[TAG],
        summary="Revoke one of your tokens",
        request=None,
        responses={200: s.TokenOut, **_errors(400, 404)},
    )
    def delete(self, request: Request, personalaccesstoken_id: int) -> Response:
        token = token_get(user=request.user, id=personalaccesstoken_id)
        token = services.personal_token_revoke(user=request.user, token=token)
        return Response(s.TokenOut(token).data)
