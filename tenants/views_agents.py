"""Agents of an organization and their API keys.

A new key's plaintext exists only in the response to the POST that created it (we store its
prefix and hash), so that response renders the page directly instead of redirecting.
"""

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from tenants import services
from tenants.decorators import org_view
from tenants.errors import DomainError
from tenants.forms import AgentEditForm, AgentForm, AgentKeyCreateForm
from tenants.models import Agent, Organization
from tenants.permissions import Perm
from tenants.selectors import agent_get, agent_key_get, agent_keys_for_agent, agents_for_org
from tenants.views_common import (
    add_domain_error,
    form_was_already_submitted,
    issue_form_nonce,
    post_only,
    require_role_perm,
)


def mcp_endpoint_url(org: Organization) -> str:
    return f"{settings.SITE_URL}/mcp/{org.slug}/"


@org_view()
def agents(request: HttpRequest) -> HttpResponse:
    if request.method != "GET":
        return HttpResponse(status=405, headers={"Allow": "GET"})
    org = request.org  # type: ignore[attr-defined]
    now = timezone.now()
    usable = Q(keys__revoked_at__isnull=True) & (
        Q(keys__expires_at__isnull=True) | Q(keys__expires_at__gt=now)
    )
    agent_list = agents_for_org(org=org).annotate(active_keys=Count("keys", filter=usable))
    return render(request, "tenants/agents.html", {"nav": "agents", "agents": agent_list})


@org_view(Perm.MANAGE_AGENTS)
def agent_create(request: HttpRequest) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    if request.method not in ("GET", "POST"):
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    form = AgentForm(request.POST or None, org=org)
    if request.method == "POST" and form.is_valid():
        try:
            agent = services.agent_create(org=org, actor=request.user, **form.cleaned_data)
        except DomainError as exc:
            add_domain_error(form, exc)
        else:
            messages.success(request, f"Agent {agent.name} created. Issue it a key below.")
            return redirect("tenants:agent-detail", org.slug, agent.pk)
    return render(request, "tenants/agent_form.html", {"nav": "agents", "form": form})


def _detail(request: HttpRequest, agent: Agent, status: int = 200, **extra: Any) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    context: dict[str, Any] = {
        "nav": "agents",
        "agent": agent,
        "keys": agent_keys_for_agent(agent=agent),
        "mcp_url": mcp_endpoint_url(org),
        "edit_form": AgentEditForm(
            org=org,
            initial={
                "name": agent.name,
                "description": agent.description,
                "acting_for": agent.acting_for_id,
                "team": agent.team_id,
                "tags": ", ".join(agent.tags),
            },
        ),
        "key_form": AgentKeyCreateForm(),
        "form_nonce": issue_form_nonce(request),
    }
    context.update(extra)
    return render(request, "tenants/agent_detail.html", context, status=status)


@org_view()
def agent_detail(request: HttpRequest, agent_id: int) -> HttpResponse:
    """GET: the agent, its keys and (for agent managers) the edit form. POST: save the edit."""
    org = request.org  # type: ignore[attr-defined]
    agent = agent_get(org=org, id=agent_id)
    if request.method == "GET":
        return _detail(request, agent)
    if (not_allowed := post_only(request)) is not None:
        return not_allowed
    require_role_perm(request, Perm.MANAGE_AGENTS)
    form = AgentEditForm(request.POST, org=org)
    if form.is_valid():
        try:
            services.agent_update(org=org, actor=request.user, agent=agent, **form.cleaned_data)
        except DomainError as exc:
            add_domain_error(form, exc)
        else:
            messages.success(request, f"Agent {agent.name} saved.")
            return redirect("tenants:agent-detail", org.slug, agent.pk)
    agent.refresh_from_db()
    return _detail(request, agent, edit_form=form, editing=True)


@org_view(Perm.MANAGE_AGENTS)
def agent_set_active(request: HttpRequest, agent_id: int) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    agent = agent_get(org=org, id=agent_id)
    if (not_allowed := post_only(request)) is not None:
        return not_allowed
    active = request.POST.get("active")
    if active not in ("true", "false"):
        messages.error(request, "Choose to enable or disable the agent.")
        return redirect("tenants:agent-detail", org.slug, agent.pk)
    try:
        services.agent_update(org=org, actor=request.user, agent=agent, is_active=active == "true")
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        if active == "true":
            messages.success(request, f"Agent {agent.name} is enabled.")
        else:
            messages.success(
                request, f"Agent {agent.name} is disabled: its keys are refused until enabled."
            )
    return redirect("tenants:agent-detail", org.slug, agent.pk)


@org_view(Perm.MANAGE_AGENTS)
def agent_key_create(request: HttpRequest, agent_id: int) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    agent = agent_get(org=org, id=agent_id)
    if (not_allowed := post_only(request)) is not None:
        return not_allowed
    if form_was_already_submitted(request):
        messages.warning(
            request,
            "That form was already submitted (a reload or a double click), so no second key was "
            "created. A key is shown only once: if you did not copy it, revoke it and create another.",
        )
        return redirect("tenants:agent-detail", org.slug, agent.pk)
    form = AgentKeyCreateForm(request.POST)
    if form.is_valid():
        try:
            key, plaintext = services.agent_key_create(
                org=org, actor=request.user, agent=agent, **form.cleaned_data
            )
        except DomainError as exc:
            add_domain_error(form, exc)
        else:
            return _detail(request, agent, status=201, new_key=key, new_key_plaintext=plaintext)
    return _detail(request, agent, key_form=form)


@org_view(Perm.MANAGE_AGENTS)
def agent_key_revoke(request: HttpRequest, agent_id: int, agentkey_id: int) -> HttpResponse:
    """GET asks for confirmation; POST revokes."""
    org = request.org  # type: ignore[attr-defined]
    agent = agent_get(org=org, id=agent_id)
    key = agent_key_get(org=org, agent=agent, id=agentkey_id)
    if request.method == "GET":
        return render(
            request, "tenants/agent_key_revoke.html", {"nav": "agents", "agent": agent, "key": key}
        )
    if (not_allowed := post_only(request)) is not None:
        return not_allowed
    try:
        services.agent_key_revoke(org=org, actor=request.user, key=key)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Key {key.prefix}… revoked: it is refused from now on.")
    return redirect("tenants:agent-detail", org.slug, agent.pk)
