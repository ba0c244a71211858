"""The auditor's filters, shared by the audit page, the export and the REST API.

One form validates the query string and turns it into an `AuditQuery`; bad input (an unparsable
date, a range wider than AUDIT_MAX_RANGE_DAYS, control characters, an over-long search) becomes a
field error the user can read, never a 500 and never a query. Every value reaches the database as
a bound parameter, so "injection" in a search box is just text that matches nothing.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from audit.models import AuditEvent, Outcome

# Printable text only: NUL and other control characters are refused (Postgres cannot store NUL,
# and nothing an auditor types legitimately contains them).
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
SEARCH_MAX = 100

FILTER_FIELDS = (
    "since",
    "until",
    "actor",
    "agent",
    "on_behalf_of",
    "action",
    "server",
    "tool",
    "decision",
    "outcome",
    "error_class",
    "request_id",
    "q",
)


def parse_when(value: str, *, end_of_day: bool = False) -> datetime | None:
    """ISO 8601 date or date-time (also the browser's datetime-local), naive = UTC."""
    value = value.strip()
    parsed: datetime | None
    try:
        parsed = parse_datetime(value)
        if parsed is None:
            day = parse_date(value)
            if day is None:
                return None
            parsed = datetime.combine(day, datetime.min.time())
            if end_of_day:
                parsed += timedelta(days=1)
    except ValueError:
        return None
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    return parsed


class _Text(forms.CharField):
    def __init__(self, *, max_length: int = 254, **kwargs: Any) -> None:
        super().__init__(required=False, max_length=max_length, strip=True, **kwargs)

    def clean(self, value: Any) -> str:
        value = super().clean(value)
        if _CONTROL_RE.search(value):
            raise forms.ValidationError("Remove control characters from this filter.")
        return value


class AuditFilterForm(forms.Form):
    since = forms.CharField(required=False, max_length=40, help_text="From (UTC), e.g. 2026-05-01")
    until = forms.CharField(required=False, max_length=40, help_text="Until (UTC), exclusive")
    actor = _Text(help_text="The user who acted (email)")
    agent = _Text(max_length=100, help_text="Agent slug")
    on_behalf_of = _Text(help_text="The user an agent acted for (email)")
    action = _Text(max_length=64, help_text="e.g. tool.call, member.invited")
    server = _Text(max_length=100)
    tool = _Text(max_length=200)
    decision = forms.ChoiceField(
        required=False, choices=[("", "any"), ("allow", "allow"), ("deny", "deny")]
    )
    outcome = forms.ChoiceField(required=False, choices=[("", "any"), *Outcome.choices])
    error_class = _Text(max_length=32)
    request_id = _Text(max_length=64)
    q = _Text(max_length=SEARCH_MAX, help_text="Search in names and labels")

    def _clean_time(self, name: str, *, end_of_day: bool) -> datetime | None:
        raw = self.cleaned_data.get(name) or ""
        if not raw:
            return None
        if _CONTROL_RE.search(raw):
            raise forms.ValidationError("Remove control characters from this date.")
        parsed = parse_when(raw, end_of_day=end_of_day)
        if parsed is None:
            raise forms.ValidationError(
                f"“{raw[:40]}” is not a date. Use YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)."
            )
        if not datetime(2000, 1, 1, tzinfo=UTC) <= parsed <= datetime(2100, 1, 1, tzinfo=UTC):
            raise forms.ValidationError("Pick a date between 2000 and 2100.")
        return parsed

    def clean_since(self) -> datetime | None:
        return self._clean_time("since", end_of_day=False)

    def clean_until(self) -> datetime | None:
        return self._clean_time("until", end_of_day=True)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since >= until:
            self.add_error("until", "“Until” must be after “from”.")
        max_days = settings.AUDIT_MAX_RANGE_DAYS
        if since and until and until - since > timedelta(days=max_days):
            self.add_error(
                "since",
                f"That range is longer than {max_days} days. Narrow it, or export it in parts.",
            )
        return data

    def to_query(self) -> "AuditQuery":
        assert self.is_valid()
        return AuditQuery(**{name: self.cleaned_data.get(name) or None for name in FILTER_FIELDS})


@dataclass(frozen=True)
class AuditQuery:
    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    agent: str | None = None
    on_behalf_of: str | None = None
    action: str | None = None
    server: str | None = None
    tool: str | None = None
    decision: str | None = None
    outcome: str | None = None
    error_class: str | None = None
    request_id: str | None = None
    q: str | None = None

    def apply(self, qs: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        if self.since:
            qs = qs.filter(occurred_at__gte=self.since)
        if self.until:
            qs = qs.filter(occurred_at__lt=self.until)
        exact = {
            "actor_label": self.actor,
            "agent_label": self.agent,
            "on_behalf_of_label": self.on_behalf_of,
            "action": self.action,
            "server": self.server,
            "tool": self.tool,
            "decision": self.decision,
            "outcome": self.outcome,
            "error_class": self.error_class,
            "request_id": self.request_id,
        }
        qs = qs.filter(**{k: v for k, v in exact.items() if v})
        if self.q:
            q = self.q
            qs = qs.filter(
                Q(actor_label__icontains=q)
                | Q(agent_label__icontains=q)
                | Q(on_behalf_of_label__icontains=q)
                | Q(target_label__icontains=q)
                | Q(tool__icontains=q)
                | Q(server__icontains=q)
            )
        return qs

    def as_params(self) -> dict[str, str]:
        """The filters as query-string values (for "older" links, exports and manifests)."""
        out = {}
        for name in FILTER_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            out[name] = value.isoformat() if isinstance(value, datetime) else str(value)
        return out

    @property
    def is_empty(self) -> bool:
        return not self.as_params()


def form_errors_text(form: forms.Form) -> dict[str, list[str]]:
    return {name: [str(e) for e in errors] for name, errors in form.errors.items()}
