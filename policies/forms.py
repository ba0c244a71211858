"""Forms of the policies UI. They only shape input; the services validate and write."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from django import forms

from policies.document import MAX_DOCUMENT_BYTES
from policies.replay import DEFAULT_MAX_ROWS, MAX_ROWS_LIMIT
from policies.types import PolicySpec, Subjects, ToolRules

MAX_YAML_CHARS = MAX_DOCUMENT_BYTES


def _split(value: str) -> tuple[str, ...]:
    """`a, b\nc` -> ('a', 'b', 'c'): one entry per comma or line, blanks dropped."""
    parts = value.replace("\n", ",").split(",")
    return tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))


def _join(values: tuple[str, ...]) -> str:
    return ", ".join(values)


class YamlForm(forms.Form):
    text = forms.CharField(
        label="YAML",
        max_length=MAX_YAML_CHARS,
        widget=forms.Textarea(attrs={"rows": 24, "spellcheck": "false", "class": "code"}),
    )


class ApplyForm(YamlForm):
    prune = forms.BooleanField(
        required=False,
        label="Delete the policies and groups this document does not name",
    )


class PolicyForm(forms.Form):
    """The simple view of a policy: who, and which groups, servers and tools. Argument rules,
    overrides, outbound domains, per-tool limits and redaction are kept as they are (edit them
    in the YAML view)."""

    name = forms.CharField(max_length=100)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    agents = forms.CharField(required=False, help_text="Agent slugs, comma separated; * for all.")
    teams = forms.CharField(required=False, help_text="Team slugs.")
    users = forms.CharField(required=False, help_text="Emails of users agents act for.")
    agent_tags = forms.CharField(required=False, label="Agent tags")
    allow_groups = forms.CharField(required=False, label="Allow tool groups")
    allow_servers = forms.CharField(required=False, label="Allow whole servers")
    allow_tools = forms.CharField(
        required=False,
        label="Allow tools",
        help_text="server.tool, or patterns like tickets/list_*",
    )
    deny_groups = forms.CharField(required=False, label="Deny tool groups")
    deny_servers = forms.CharField(required=False, label="Deny whole servers")
    deny_tools = forms.CharField(required=False, label="Deny tools", help_text="Deny always wins.")
    rate_limit_per_minute = forms.IntegerField(
        required=False, min_value=1, max_value=1_000_000_000, label="Calls per minute"
    )
    rate_limit_per_day = forms.IntegerField(
        required=False, min_value=1, max_value=1_000_000_000, label="Calls per day"
    )

    @classmethod
    def initial_for(cls, spec: PolicySpec) -> dict[str, Any]:
        return {
            "name": spec.name,
            "description": spec.description,
            "agents": _join(spec.agents),
            "teams": _join(spec.subjects.teams),
            "users": _join(spec.subjects.users),
            "agent_tags": _join(spec.subjects.agent_tags),
            "allow_groups": _join(spec.allow.tool_groups),
            "allow_servers": _join(spec.allow.servers),
            "allow_tools": _join(spec.allow.tools),
            "deny_groups": _join(spec.deny.tool_groups),
            "deny_servers": _join(spec.deny.servers),
            "deny_tools": _join(spec.deny.tools),
            "rate_limit_per_minute": spec.limits.per_minute,
            "rate_limit_per_day": spec.limits.per_day,
        }

    def to_spec(self, base: PolicySpec | None) -> PolicySpec:
        """The spec the form describes, keeping `base`'s advanced sections."""
        data = self.cleaned_data
        base = base or PolicySpec(name=data["name"])
        agents = _split(data["agents"])
        consumer = None
        # Keep the `consumer` shorthand when the agent list still starts with it.
        if base.consumer is not None and agents[:1] == (base.consumer,):
            consumer, agents = agents[0], agents[1:]
        return replace(
            base,
            name=data["name"].strip(),
            description=data["description"].strip(),
            consumer=consumer,
            subjects=Subjects(
                agents=agents,
                teams=_split(data["teams"]),
                users=_split(data["users"]),
                agent_tags=_split(data["agent_tags"]),
            ),
            allow=ToolRules(
                tool_groups=_split(data["allow_groups"]),
                servers=_split(data["allow_servers"]),
                tools=_split(data["allow_tools"]),
            ),
            deny=ToolRules(
                tool_groups=_split(data["deny_groups"]),
                servers=_split(data["deny_servers"]),
                tools=_split(data["deny_tools"]),
            ),
            limits=replace(
                base.limits,
                per_minute=data["rate_limit_per_minute"],
                per_day=data["rate_limit_per_day"],
            ),
        )


class ToolGroupForm(forms.Form):
    slug = forms.CharField(max_length=100)
    name = forms.CharField(max_length=100, required=False)
    description = forms.CharField(
        max_length=4000, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    tools = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "class": "code"}),
        help_text="One per line: server.tool, server/tool, or patterns like tickets/list_*.",
        max_length=200_000,
    )

    def clean_tools(self) -> list[str]:
        return list(_split(self.cleaned_data["tools"]))


def _json_object(value: str) -> dict[str, Any]:
    if not value.strip():
        return {}
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise forms.ValidationError(
            f"Not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})."
        ) from None
    if not isinstance(data, dict):
        raise forms.ValidationError('Give a JSON object, like {"ticket_id": "T-1"}.')
    return data


class ExplainForm(forms.Form):
    agent = forms.ChoiceField(choices=())
    tool = forms.CharField(max_length=300, help_text="The name agents see: server.tool")
    arguments = forms.CharField(
        required=False,
        max_length=100_000,
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false", "class": "code"}),
        help_text="A JSON object.",
    )
    proposed = forms.CharField(
        required=False,
        max_length=MAX_YAML_CHARS,
        label="Against a proposed document (optional)",
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "class": "code"}),
    )

    def __init__(self, *args: Any, agents: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["agent"].choices = agents

    def clean_arguments(self) -> dict[str, Any]:
        return _json_object(self.cleaned_data["arguments"])


class ReplayForm(YamlForm):
    since = forms.DateTimeField(help_text="UTC, e.g. 2026-01-31 09:00")
    until = forms.DateTimeField(required=False, help_text="Default: now")
    max_rows = forms.IntegerField(
        min_value=1,
        max_value=MAX_ROWS_LIMIT,
        initial=DEFAULT_MAX_ROWS,
        label="Rows to scan at most",
    )
    prune = forms.BooleanField(required=False, label="The document is the whole policy set")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since >= until:
            self.add_error("until", "Must be later than since.")
        return data
