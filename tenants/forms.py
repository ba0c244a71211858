from django import forms

from tenants.models import slug_validator


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
