"""Policies pages: list, editor (YAML validated as you type, and a simple form), apply a
document, export, tool groups, explain and replay. Thin: a form, one service or selector call,
a template. Reading needs `read_policy`; every change needs `edit_policy` (checked again by the
services)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from policies import selectors, services
from policies.document import text_diff
from policies.errors import PolicyError, ValidationError
from policies.forms import (
    ApplyForm,
    ExplainForm,
    PolicyForm,
    ReplayForm,
    ToolGroupForm,
    YamlForm,
)
from policies.models import Policy
from policies.replay import policy_explain, policy_replay
from policies.specs import policy_spec, policy_yaml, spec_yaml
from tenants.decorators import org_view
from tenants.permissions import Perm
from tenants.selectors import agents_for_org

NEW_POLICY_YAML = """\
name: my-policy
description: "Who may call what"
subjects:
  agents: ["some-agent"]
allow:
  tools: ["server.tool"]
"""


def _can_edit(request: HttpRequest) -> bool:
    from tenants.permissions import role_has

    return role_has(request.membership.role, Perm.EDIT_POLICY)  # type: ignore[attr-defined]


def _problems(exc: PolicyError) -> list[ValidationError]:
    return list(getattr(exc, "errors", []) or [ValidationError("", exc.message)])


# --------------------------------------------------------------------------- list


@org_view(Perm.READ_POLICY)
def policy_list(request: HttpRequest) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    return render(
        request,
        "policies/policy_list.html",
        {
            "nav": "policies",
            "policies": selectors.policies_for_org(org=org),
            "groups": selectors.tool_groups_for_org(org=org),
            "can_edit": _can_edit(request),
            "version": org.policy_version,
        },
    )


# --------------------------------------------------------------------------- editor


def _editor_context(
    request: HttpRequest, policy: Policy | None, yaml_form: YamlForm, simple_form: PolicyForm
) -> dict[str, Any]:
    return {
        "nav": "policies",
        "policy": policy,
        "yaml_form": yaml_form,
        "simple_form": simple_form,
        "can_edit": _can_edit(request),
        "revisions": selectors.revisions_for_policy(policy=policy) if policy else [],
    }


def _editor(request: HttpRequest, policy: Policy | None) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    spec = policy_spec(policy) if policy is not None else None
    yaml_form = YamlForm(
        initial={"text": policy_yaml(policy) if policy is not None else NEW_POLICY_YAML}
    )
    simple_form = PolicyForm(initial=PolicyForm.initial_for(spec) if spec is not None else None)
    status = 200
    if request.method == "POST":
        if not _can_edit(request):
            return render(
                request, "error.html", {"message": "You cannot edit policies."}, status=403
            )
        mode = request.POST.get("mode", "yaml")
        if mode == "form":
            simple_form = PolicyForm(request.POST)
            target: PolicyForm | YamlForm = simple_form
        else:
            yaml_form = YamlForm(request.POST)
            target = yaml_form
        status = 400
        if target.is_valid():
            try:
                if mode == "form":
                    saved = services.policy_save(
                        org=org, actor=request.user, policy=policy, spec=simple_form.to_spec(spec)
                    )
                else:
                    saved = services.policy_save(
                        org=org,
                        actor=request.user,
                        policy=policy,
                        text=yaml_form.cleaned_data["text"],
                    )
            except PolicyError as exc:
                for problem in _problems(exc):
                    target.add_error(None, str(problem))
            else:
                messages.success(
                    request, f"Policy '{saved.name}' saved (revision {saved.revision})."
                )
                return redirect("policies:edit", org.slug, saved.pk)
    context = _editor_context(request, policy, yaml_form, simple_form)
    return render(request, "policies/policy_edit.html", context, status=status)


@org_view(Perm.READ_POLICY)
@require_http_methods(["GET", "POST"])
def policy_create(request: HttpRequest) -> HttpResponse:
    return _editor(request, None)


@org_view(Perm.READ_POLICY)
@require_http_methods(["GET", "POST"])
def policy_edit(request: HttpRequest, policy_id: int) -> HttpResponse:
    policy = selectors.policy_get(org=request.org, id=policy_id)  # type: ignore[attr-defined]
    return _editor(request, policy)


def _validate(request: HttpRequest, policy: Policy | None) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    form = YamlForm(request.POST)
    yaml_diff: list[tuple[str, str]] = []
    if form.is_valid():
        spec, errors, warnings, diff = services.policy_check(
            org=org, text=form.cleaned_data["text"], policy=policy
        )
        if spec is not None and policy is not None and not errors:
            # Canonical YAML on both sides: the lines that saving would change, without the
            # noise of comments or layout (the editor's text is stored in canonical form).
            yaml_diff = text_diff(policy_yaml(policy), spec_yaml(spec))
    else:
        errors = [ValidationError("", " ".join(form.errors.get("text", ["Give the YAML."])))]
        warnings, diff = [], []
    return render(
        request,
        "policies/policy_edit.html#validation",
        {
            "errors": errors,
            "warnings": warnings,
            "diff": diff,
            "yaml_diff": yaml_diff,
            "checked": True,
        },
    )


@org_view(Perm.READ_POLICY)
@require_POST
def policy_validate_new(request: HttpRequest) -> HttpResponse:
    return _validate(request, None)


@org_view(Perm.READ_POLICY)
@require_POST
def policy_validate(request: HttpRequest, policy_id: int) -> HttpResponse:
    policy = selectors.policy_get(org=request.org, id=policy_id)  # type: ignore[attr-defined]
    return _validate(request, policy)


@org_view(Perm.EDIT_POLICY)
@require_POST
def policy_toggle(request: HttpRequest, policy_id: int) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    policy = selectors.policy_get(org=org, id=policy_id)
    enable = not policy.enabled
    try:
        services.policy_set_enabled(org=org, actor=request.user, policy=policy, enabled=enable)
    except PolicyError as exc:
        for problem in _problems(exc):
            messages.error(request, str(problem))
    else:
        messages.success(request, f"Policy '{policy.name}' {'enabled' if enable else 'disabled'}.")
    return redirect("policies:edit", org.slug, policy.pk)


@org_view(Perm.EDIT_POLICY)
@require_POST
def policy_delete(request: HttpRequest, policy_id: int) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    policy = selectors.policy_get(org=org, id=policy_id)
    try:
        services.policy_delete(org=org, actor=request.user, policy=policy)
    except PolicyError as exc:
        for problem in _problems(exc):
            messages.error(request, str(problem))
        return redirect("policies:edit", org.slug, policy.pk)
    messages.success(request, f"Policy '{policy.name}' deleted.")
    return redirect("policies:list", org.slug)


# --------------------------------------------------------------------------- apply / export


@org_view(Perm.READ_POLICY)
@require_http_methods(["GET", "POST"])
def policy_apply(request: HttpRequest) -> HttpResponse:
    """Paste a document: "Check" shows errors and the diff; "Apply" writes it."""
    org = request.org  # type: ignore[attr-defined]
    form = ApplyForm(request.POST or None)
    result = None
    status = 200
    if request.method == "POST" and form.is_valid():
        dry_run = request.POST.get("action") != "apply"
        if not dry_run and not _can_edit(request):
            return render(
                request, "error.html", {"message": "You cannot edit policies."}, status=403
            )
        result = services.policy_apply(
            org=org,
            actor=request.user,
            text=form.cleaned_data["text"],
            dry_run=dry_run,
            prune=form.cleaned_data["prune"],
        )
        if result.errors:
            status = 400
        elif result.applied:
            changed = ", ".join(result.changes) or "nothing changed"
            messages.success(request, f"Applied: {changed}.")
            return redirect("policies:list", org.slug)
    elif request.method == "POST":
        status = 400
    return render(
        request,
        "policies/apply.html",
        {"nav": "policies", "form": form, "result": result, "can_edit": _can_edit(request)},
        status=status,
    )


@org_view(Perm.READ_POLICY)
def policy_export(request: HttpRequest) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    response = HttpResponse(
        services.policy_export(org=org), content_type="application/yaml; charset=utf-8"
    )
    if request.GET.get("download"):
        response["Content-Disposition"] = f'attachment; filename="{org.slug}-policies.yaml"'
    return response


# --------------------------------------------------------------------------- tool groups


@org_view(Perm.READ_POLICY)
@require_http_methods(["GET", "POST"])
def group_list(request: HttpRequest) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    form = ToolGroupForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if not _can_edit(request):
            return render(
                request, "error.html", {"message": "You cannot edit policies."}, status=403
            )
        if form.is_valid():
            try:
                group = services.tool_group_save(org=org, actor=request.user, **form.cleaned_data)
            except PolicyError as exc:
                for problem in _problems(exc):
                    form.add_error(None, str(problem))
            else:
                messages.success(request, f"Tool group '{group.slug}' created.")
                return redirect("policies:groups", org.slug)
        status = 400
    return render(
        request,
        "policies/group_list.html",
        {
            "nav": "tool-groups",
            "groups": selectors.tool_groups_for_org(org=org),
            "form": form,
            "can_edit": _can_edit(request),
        },
        status=status,
    )


@org_view(Perm.READ_POLICY)
@require_http_methods(["GET", "POST"])
def group_edit(request: HttpRequest, toolgroup_id: int) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    group = selectors.tool_group_get(org=org, id=toolgroup_id)
    form = ToolGroupForm(
        request.POST or None,
        initial={
            "slug": group.slug,
            "name": group.name,
            "description": group.description,
            "tools": "\n".join(group.tools),
        },
    )
    status = 200
    if request.method == "POST":
        if not _can_edit(request):
            return render(
                request, "error.html", {"message": "You cannot edit policies."}, status=403
            )
        if form.is_valid():
            try:
                group = services.tool_group_save(
                    org=org, actor=request.user, group=group, **form.cleaned_data
                )
            except PolicyError as exc:
                for problem in _problems(exc):
                    form.add_error(None, str(problem))
            else:
                messages.success(request, f"Tool group '{group.slug}' saved.")
                return redirect("policies:group-edit", org.slug, group.pk)
        status = 400
    return render(
        request,
        "policies/group_edit.html",
        {
            "nav": "tool-groups",
            "group": group,
            "form": form,
            "can_edit": _can_edit(request),
            "revisions": selectors.revisions_for_tool_group(group=group),
        },
        status=status,
    )


@org_view(Perm.EDIT_POLICY)
@require_POST
def group_delete(request: HttpRequest, toolgroup_id: int) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    group = selectors.tool_group_get(org=org, id=toolgroup_id)
    try:
        services.tool_group_delete(org=org, actor=request.user, group=group)
    except PolicyError as exc:
        for problem in _problems(exc):
            messages.error(request, str(problem))
        return redirect("policies:group-edit", org.slug, group.pk)
    messages.success(request, f"Tool group '{group.slug}' deleted.")
    return redirect("policies:groups", org.slug)


# --------------------------------------------------------------------------- explain / replay


@org_view(Perm.READ_POLICY)
@require_http_methods(["GET", "POST"])
def explain(request: HttpRequest) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    agents = {str(a.pk): a for a in agents_for_org(org=org)}
    choices = [(pk, f"{a.name} ({a.slug})") for pk, a in agents.items()]
    form = ExplainForm(request.POST or None, agents=choices)
    explanation = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            explanation = policy_explain(
                org=org,
                agent=agents[data["agent"]],
                tool=data["tool"].strip(),
                arguments=data["arguments"],
                proposed_text=data["proposed"] or None,
            )
        else:
            status = 400
    template = "policies/explain.html#result" if request.htmx else "policies/explain.html"  # type: ignore[attr-defined]
    # The arguments as JSON, as they go upstream (not Python's repr).
    sent = (
        json.dumps(explanation.effective_arguments, indent=2, ensure_ascii=False)
        if explanation is not None and explanation.allowed
        else ""
    )
    return render(
        request,
        template,
        {"nav": "policies-explain", "form": form, "explanation": explanation, "sent": sent},
        status=status,
    )


@org_view(Perm.READ_POLICY)
@require_http_methods(["GET", "POST"])
def replay(request: HttpRequest) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    initial = {"text": services.policy_export(org=org)}
    form = ReplayForm(request.POST or None, initial=initial)
    result = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            result = policy_replay(
                org=org,
                text=data["text"],
                since=data["since"],
                until=data["until"],
                max_rows=data["max_rows"],
                prune=data["prune"],
            )
            if result.errors:
                status = 400
        else:
            status = 400
    return render(
        request,
        "policies/replay.html",
        {"nav": "policies-replay", "form": form, "result": result},
        status=status,
    )
