"""Forms of the credentials UI: validation only; services do the writes."""

from django import forms

from credentials.models import TokenAuthMethod


class ProviderForm(forms.Form):
    name = forms.CharField(max_length=100)
    slug = forms.SlugField(max_length=50, required=False, help_text="Defaults from the name.")
    issuer = forms.URLField(
        max_length=500,
        required=False,
        assume_scheme="https",
        help_text="With an issuer, the endpoints are discovered (RFC 8414 / OpenID Connect).",
    )
    authorization_endpoint = forms.URLField(max_length=500, required=False, assume_scheme="https")
    token_endpoint = forms.URLField(max_length=500, required=False, assume_scheme="https")
    revocation_endpoint = forms.URLField(max_length=500, required=False, assume_scheme="https")
    introspection_endpoint = forms.URLField(max_length=500, required=False, assume_scheme="https")
    client_id = forms.CharField(max_length=255)
    client_secret = forms.CharField(
        max_length=1000,
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted; never shown again. Leave empty to keep the stored one.",
    )
    token_endpoint_auth_method = forms.ChoiceField(
        choices=TokenAuthMethod.choices, initial=TokenAuthMethod.CLIENT_SECRET_BASIC
    )
    scopes = forms.CharField(max_length=1000, required=False, help_text="Space-separated.")
    pkce_required = forms.BooleanField(required=False, initial=True)
    resource = forms.CharField(
        max_length=500, required=False, help_text="RFC 8707 resource indicator (optional)."
    )

    def clean(self) -> dict:
        data = super().clean()
        if not data.get("issuer") and not (
            data.get("authorization_endpoint") and data.get("token_endpoint")
        ):
            self.add_error(
                "issuer", "Enter the issuer, or both the authorization and token endpoints."
            )
        return data
