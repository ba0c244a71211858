"""Forms of the tenants UI. They validate input and nothing else: every write goes through
tenants.services, which checks permissions and audits."""

from django import forms
from django.conf import settings

from tenants.models import Organization, Team, User, slug_validator
from tenants.permissions import Role
from tenants.services import MAX_KEY_TTL_DAYS


class AcceptInvitationForm(forms.Form):
    """Shown to someone without an account: the invitation's email is fixed; they pick a name and
    a password."""

    name = forms.CharField(max_length=150, required=False)
    password1 = forms.CharField(label="Password", widget=forms.PasswordInput, strip=False)
    password2 = forms.CharField(label="Password again", widget=forms.PasswordInput, strip=False)

    def clean(self) -> dict:
        data = super().clean()
        if data.get("password1") and data.get("password1") != data.get("password2"):
            self.add_error("password2", "The two passwords differ.")
        return data


class OrgCreateForm(forms.Form):
    name = forms.CharField(max_length=100)
    slug = forms.CharField(
        max_length=50, validators=[slug_validator], help_text="Used in URLs: acme, acme-eu."
    )


class _OrgUserChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: User) -> str:
        return f"{obj.name} <{obj.email}>" if obj.name else obj.email


class _OrgUsersChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: User) -> str:
        return f"{obj.name} <{obj.email}>" if obj.name else obj.email


def _org_users(org: Organization) -> "forms.models.QuerySet[User]":
    return User.objects.filter(memberships__organization=org).order_by("email")


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class TeamCreateForm(forms.Form):
    name = forms.CharField(max_length=100)
    slug = forms.CharField(max_length=50, validators=[slug_validator], help_text="e.g. platform")


class TeamMembersForm(forms.Form):
    members = _OrgUsersChoiceField(
        queryset=User.objects.none(),
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 8}),
        help_text="Hold Ctrl (or Cmd) to pick several.",
    )

    def __init__(self, *args: object, org: Organization, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["members"].queryset = _org_users(org)


def _parse_tags(raw: str) -> list[str]:
    return [t.strip() for t in raw.replace("\n", ",").split(",") if t.strip()]


class AgentForm(forms.Form):
    name = forms.CharField(max_length=100)
    slug = forms.CharField(
        max_length=50, validators=[slug_validator], help_text="Used in logs and policies."
    )
    description = forms.CharField(
        max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 3})
    )
    acting_for = _OrgUserChoiceField(
        queryset=User.objects.none(),
        required=False,
        empty_label="Nobody (the agent acts as itself)",
        help_text="Its calls use this member's connected accounts.",
    )
    team = forms.ModelChoiceField(
        queryset=Team.objects.none(), required=False, empty_label="No team"
    )
    tags = forms.CharField(
        max_length=1000, required=False, help_text="Comma-separated: triage, ops"
    )

    def __init__(self, *args: object, org: Organization, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["acting_for"].queryset = _org_users(org)
        self.fields["team"].queryset = Team.objects.for_org(org).order_by("name")

    def clean_tags(self) -> list[str]:
        return _parse_tags(self.cleaned_data.get("tags") or "")


class AgentEditForm(AgentForm):
    """The slug names the agent in policies and the audit trail, so it does not change."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        del self.fields["slug"]


class _ExpiryMixin(forms.Form):
    expires_in_days = forms.IntegerField(
        label="Expires in (days)",
        min_value=1,
        max_value=MAX_KEY_TTL_DAYS,
        required=False,
        help_text="Leave empty for a secret that never expires (not recommended).",
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["expires_in_days"].initial = settings.AGENT_KEY_DEFAULT_TTL_DAYS


class AgentKeyCreateForm(_ExpiryMixin):
    name = forms.CharField(max_length=100, required=False, help_text="e.g. laptop, CI")
    field_order = ["name", "expires_in_days"]


class TokenCreateForm(_ExpiryMixin):
    name = forms.CharField(max_length=100, help_text="What the token is for: ci, terraform")
    field_order = ["name", "expires_in_days"]
