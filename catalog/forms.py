"""Forms of the catalog pages: they parse text inputs into the shapes the services take; the
services validate the meaning (and their errors land on the matching field)."""

from typing import Any

from django import forms

from catalog.models import AuthMode, Classification, Transport
from credentials.models import OAuthProvider
from tenants.models import Organization

TEXTAREA = {"rows": 3}


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _pairs(text: str, sep: str, field: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in _lines(text):
        if sep not in line:
            raise forms.ValidationError(f"Write one '{field}' per line.")
        name, _, value = line.partition(sep)
        out[name.strip()] = value.strip()
    return out


class ServerForm(forms.Form):
    name = forms.CharField(max_length=100)
    slug = forms.RegexField(
        r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$",
        max_length=50,
        help_text="Agents call its tools as <slug>.<tool>: lowercase letters, digits, hyphens.",
        error_messages={"invalid": "Use lowercase letters, digits and hyphens (no dots)."},
    )
    description = forms.CharField(
        required=False, max_length=4000, widget=forms.Textarea(attrs=TEXTAREA)
    )
    purpose = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs=TEXTAREA)
    )
    transport = forms.ChoiceField(choices=Transport.choices, initial=Transport.HTTP)
    url = forms.CharField(required=False, max_length=500, label="URL (Streamable HTTP)")
    command = forms.CharField(required=False, max_length=500, label="Command (stdio)")
    args = forms.CharField(
        required=False, widget=forms.Textarea(attrs=TEXTAREA), help_text="One argument per line."
    )
    env = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs=TEXTAREA),
        label="Environment (stdio)",
        help_text="NAME=value per line; values are stored encrypted. Leave empty to keep the stored ones.",
    )
    working_dir = forms.CharField(required=False, max_length=500)
    auth_mode = forms.ChoiceField(
        choices=AuthMode.choices, initial=AuthMode.NONE, label="Upstream auth"
    )
    oauth_provider = forms.ModelChoiceField(
        queryset=OAuthProvider.objects.none(),
        required=False,
        label="OAuth provider (per-user OAuth)",
        help_text="Each user's own connection to this provider is sent to the server.",
    )
    static_headers = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs=TEXTAREA),
        label="Static secret headers",
        help_text="Name: value per line; values are stored encrypted. Leave empty to keep the stored ones.",
    )
    egress_hosts = forms.CharField(
        required=False,
        help_text="Hosts the server may reach, comma-separated (*.example.com allowed). Default: the URL's host.",
    )
    tags = forms.CharField(required=False, help_text="Comma-separated.")
    data_classification = forms.ChoiceField(
        choices=Classification.choices, initial=Classification.INTERNAL
    )
    sla = forms.CharField(required=False, max_length=200, label="SLA")
    sla_target = forms.CharField(required=False, max_length=50, label="SLA target")
    docs_url = forms.URLField(required=False, max_length=500, label="Docs URL")

    def __init__(self, *args: Any, org: Organization, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only this organization's providers can be chosen (the service checks it again).
        self.fields["oauth_provider"].queryset = OAuthProvider.objects.for_org(org)  # type: ignore[attr-defined]
        if editing:
            self.fields["slug"].disabled = True

    def clean_args(self) -> list[str]:
        return _lines(self.cleaned_data["args"])

    def clean_env(self) -> dict[str, str] | None:
        text = self.cleaned_data["env"]
        return _pairs(text, "=", "NAME=value") if text.strip() else None

    def clean_static_headers(self) -> dict[str, str] | None:
        text = self.cleaned_data["static_headers"]
        return _pairs(text, ":", "Name: value") if text.strip() else None

    def clean_egress_hosts(self) -> list[str]:
        return [
            h.strip()
            for h in self.cleaned_data["egress_hosts"].replace("\n", ",").split(",")
            if h.strip()
        ]

    def clean_tags(self) -> list[str]:
        return [t.strip() for t in self.cleaned_data["tags"].split(",") if t.strip()]


class ReviewForm(forms.Form):
    note = forms.CharField(required=False, max_length=4000, widget=forms.Textarea(attrs=TEXTAREA))
    acknowledge_findings = forms.BooleanField(
        required=False, label="I have read the high-severity findings and accept them."
    )


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))
