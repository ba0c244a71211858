"""Input and output serializers of the tenants REST API. Inputs validate shapes only (the
services decide); outputs never carry a hash, and a secret only in the one-time `*Created`
responses."""

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tenants.api.base import StrictSerializer
from tenants.models import Team, slug_validator
from tenants.permissions import Role
from tenants.services import MAX_KEY_TTL_DAYS

# Named choice sets, so the OpenAPI schema gets one readable enum per set (ENUM_NAME_OVERRIDES).
INVITATION_STATUSES = ["pending", "accepted", "revoked", "expired"]
SECRET_STATUSES = ["active", "expired", "revoked"]


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False
    )


def _slug_field(**kwargs: object) -> serializers.CharField:
    return serializers.CharField(max_length=50, validators=[slug_validator], **kwargs)


def _expiry_field() -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=1,
        max_value=MAX_KEY_TTL_DAYS,
        allow_null=True,
        required=False,
        default=settings.AGENT_KEY_DEFAULT_TTL_DAYS,
        help_text=(
            f"Days until the secret expires ({settings.AGENT_KEY_DEFAULT_TTL_DAYS} when omitted); "
            "null for a secret that never expires."
        ),
    )


# --- Organizations ---------------------------------------------------------------------------


class OrgCreateIn(StrictSerializer):
    name = serializers.CharField(max_length=100)
    slug = _slug_field()


class OrgOut(serializers.Serializer):
    """An organization as the caller sees it, with the caller's role in it (from a Membership)."""

    id = serializers.IntegerField(source="organization.id")
    name = serializers.CharField(source="organization.name")
    slug = serializers.CharField(source="organization.slug")
    created_at = serializers.DateTimeField(source="organization.created_at")
    role = serializers.ChoiceField(choices=Role.choices)


# --- Members and invitations ----------------------------------------------------------------


class UserBriefOut(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    name = serializers.CharField()


class MembershipOut(serializers.Serializer):
    id = serializers.IntegerField()
    user = UserBriefOut()
    role = serializers.ChoiceField(choices=Role.choices)
    joined_at = serializers.DateTimeField(source="created_at")


class MembershipPatchIn(StrictSerializer):
    role = serializers.ChoiceField(choices=Role.choices)


class InvitationCreateIn(StrictSerializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)


class InvitationOut(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices)
    status = serializers.ChoiceField(choices=INVITATION_STATUSES)
    invited_by = serializers.EmailField(source="invited_by.email", allow_null=True, default=None)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    accepted_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)


class InvitationCreatedOut(InvitationOut):
    accept_url = serializers.URLField(
        help_text="The single-use accept link. Returned once: only its hash is stored."
    )


# --- Teams ------------------------------------------------------------------------------------


class TeamCreateIn(StrictSerializer):
    name = serializers.CharField(max_length=100)
    slug = _slug_field()


class TeamPatchIn(StrictSerializer):
    members = serializers.ListField(
        child=serializers.EmailField(max_length=254),
        max_length=1000,
        allow_empty=True,
        help_text="The complete list of the team's members (emails of organization members).",
    )


class TeamOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.CharField()
    members = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    @extend_schema_field(serializers.ListField(child=serializers.EmailField()))
    def get_members(self, team: Team) -> list[str]:
        return sorted(user.email for user in team.members.all())


# --- Agents and keys ------------------------------------------------------------------------


class _AgentFieldsIn(StrictSerializer):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(max_length=2000, allow_blank=True, required=False)
    acting_for = serializers.EmailField(
        max_length=254,
        allow_null=True,
        required=False,
        help_text="Email of the member the agent acts for; null for none.",
    )
    team = serializers.CharField(
        max_length=50, allow_null=True, required=False, help_text="Slug of a team; null for none."
    )
    tags = serializers.ListField(
        child=serializers.CharField(max_length=40), max_length=20, required=False
    )


class AgentCreateIn(_AgentFieldsIn):
    slug = _slug_field()


class AgentPatchIn(_AgentFieldsIn):
    is_active = serializers.BooleanField(required=False)

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("partial", True)
        super().__init__(*args, **kwargs)


class AgentOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.CharField()
    description = serializers.CharField()
    acting_for = serializers.EmailField(source="acting_for.email", allow_null=True, default=None)
    team = serializers.CharField(source="team.slug", allow_null=True, default=None)
    tags = serializers.ListField(child=serializers.CharField())
    is_active = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class AgentKeyCreateIn(StrictSerializer):
    name = serializers.CharField(max_length=100, allow_blank=True, required=False, default="")
    expires_in_days = _expiry_field()


class AgentKeyOut(serializers.Serializer):
    id = serializers.IntegerField()
    agent = serializers.CharField(source="agent.slug")
    name = serializers.CharField()
    prefix = serializers.CharField()
    status = serializers.ChoiceField(choices=SECRET_STATUSES)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)


class AgentKeyCreatedOut(AgentKeyOut):
    key = serializers.CharField(help_text="The API key. Returned once: only its hash is stored.")
    mcp_url = serializers.URLField(help_text="The organization's MCP endpoint for this key.")


# --- Personal access tokens ------------------------------------------------------------------


class TokenCreateIn(StrictSerializer):
    name = serializers.CharField(max_length=100)
    expires_in_days = _expiry_field()


class TokenOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    status = serializers.ChoiceField(choices=SECRET_STATUSES)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)


class TokenCreatedOut(TokenOut):
    token = serializers.CharField(help_text="The token. Returned once: only its hash is stored.")
