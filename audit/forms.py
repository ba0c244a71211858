"""Forms of the audit pages (the filter form lives in audit.filters: the API shares it)."""

from django import forms


class RetentionForm(forms.Form):
    retention_days = forms.IntegerField(
        required=False,
        min_value=30,
        max_value=36500,
        help_text="Delete events older than this many days (at least 30). Empty: keep forever.",
    )
    legal_hold = forms.BooleanField(
        required=False, help_text="While on hold, nothing of this organization is ever purged."
    )
    hold_reason = forms.CharField(required=False, max_length=255)

    def clean(self) -> dict:
        data = super().clean()
        if data.get("legal_hold") and not (data.get("hold_reason") or "").strip():
            self.add_error("hold_reason", "Say why the trail is on hold (e.g. the matter number).")
        return data
