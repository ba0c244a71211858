"""Catalog pages: thin views (form -> one service -> render or redirect). One view serves the
full page and its htmx partial."""

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from catalog import selectors, services
from catalog.forms import ReasonForm, ReviewForm, ServerForm
from catalog.models import Server, ServerStatus, VersionStatus
from tenants.decorators import org_view
from tenants.errors import DomainError
from tenants.permissions import Perm, role_has


def _can_approve(request: HttpRequest) -> bool:
    return role_has(request.membership.role, Perm.APPROVE_SERVER)  # type: ignore[attr-defined]


def _can_edit(request: HttpRequest, server: Server) -> bool:
    return server.owner_id == request.user.pk or _can_approve(request)


@org_view(Perm.VIEW_ORG)
def server_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status") or None
    if status not in ServerStatus.values:
        status = None
    query = request.GET.get("q", "").strip()[:100]
    servers = selectors.servers_for_org(org=request.org, status=status, q=query or None)  # type: ignore[attr-defined]
    context = {
        "nav": "catalog",
        "servers": servers,
        "status": status,
        "q": query,
        "statuses": ServerStatus.choices,
    }
    template = "catalog/server_list.html#rows" if request.htmx else "catalog/server_list.html"  # type: ignore[attr-defined]
    return render(request, template, context)


@org_view(Perm.SUBMIT_SERVER)
@require_http_methods(["GET", "POST"])
def server_create(request: HttpRequest) -> HttpResponse:
    form = ServerForm(request.POST or None, org=request.org)  # type: ignore[attr-defined]
    if request.method == "POST" and form.is_valid():
        try:
            server = services.server_create(
                org=request.org, actor=request.user, **form.cleaned_data
            )  # type: ignore[attr-defined]
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, f"{server.name} is registered. Fetch its tools next.")
            return redirect("catalog:server_detail", request.org.slug, server.pk)  # type: ignore[attr-defined]
    return render(request, "catalog/server_form.html", {"nav": "catalog", "form": form})


@org_view(Perm.SUBMIT_SERVER)
@require_http_methods(["GET", "POST"])
def server_edit(request: HttpRequest, server_id: int) -> HttpResponse:
    server = selectors.server_get(org=request.org, id=server_id)  # type: ignore[attr-defined]
    initial = {
        "name": server.name,
        "slug": server.slug,
        "description": server.description,
        "purpose": server.purpose,
        "transport": server.transport,
        "url": server.url,
        "command": server.command,
        "args": "\n".join(server.args),
        "working_dir": server.working_dir,
        "auth_mode": server.auth_mode,
        "oauth_provider": server.oauth_provider_id,
        "egress_hosts": ", ".join(server.egress_hosts),
        "tags": ", ".join(server.tags),
        "data_classification": server.data_classification,
        "sla": server.sla,
        "sla_target": server.sla_target,
        "docs_url": server.docs_url,
    }
    form = ServerForm(request.POST or None, initial=initial, editing=True, org=request.org)  # type: ignore[attr-defined]
    if request.method == "POST" and form.is_valid():
        data = {k: v for k, v in form.cleaned_data.items() if k != "slug"}
        try:
            services.server_update(org=request.org, actor=request.user, server=server, **data)  # type: ignore[attr-defined]
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, "Saved.")
            return redirect("catalog:server_detail", request.org.slug, server.pk)  # type: ignore[attr-defined]
    return render(
        request, "catalog/server_form.html", {"nav": "catalog", "form": form, "server": server}
    )


def _detail_context(request: HttpRequest, server: Server, **extra: Any) -> dict[str, Any]:
    approved_tools = (
        selectors.tools_for_version(version=server.approved_version)
        if server.approved_version_id
        else []
    )
    open_version = selectors.open_version(server=server)
    return {
        "nav": "catalog",
        "server": server,
        "approved_tools": approved_tools,
        "quarantined": [t for t in approved_tools if t.quarantined],
        "open_version": open_version,
        "can_withdraw": open_version is not None
        and open_version.status == VersionStatus.SUBMITTED
        and request.user.pk in (server.owner_id, open_version.submitted_by_id),
        "versions": selectors.versions_for_server(server=server),
        "can_edit": _can_edit(request, server),
        "can_approve": _can_approve(request),
        "reason_form": ReasonForm(),
        "fetch_job": selectors.latest_fetch_job(server=server, user=request.user),
        **extra,
    }


@org_view(Perm.VIEW_ORG)
def server_detail(request: HttpRequest, server_id: int) -> HttpResponse:
    server = selectors.server_get(org=request.org, id=server_id)  # type: ignore[attr-defined]
    return render(request, "catalog/server_detail.html", _detail_context(request, server))


@org_view(Perm.SUBMIT_SERVER)
@require_POST
def server_fetch(request: HttpRequest, server_id: int) -> HttpResponse:
    """Queue "Fetch tools" as a background job. With htmx the draft card is swapped for one
    that polls the job's progress every second until it ends."""
    server = selectors.server_get(org=request.org, id=server_id)  # type: ignore[attr-defined]
    error = None
    try:
        services.fetch_job_start(org=request.org, actor=request.user, server=server)  # type: ignore[attr-defined]
    except DomainError as exc:
        error = exc
    if request.htmx:  # type: ignore[attr-defined]
        server.refresh_from_db()
        ctx = _detail_context(request, server, fetch_error=error)
        return render(request, "catalog/server_detail.html#draft", ctx, status=200)
    if error is not None:
        messages.error(request, error.message)
    return redirect("catalog:server_detail", request.org.slug, server.pk)  # type: ignore[attr-defined]


@org_view(Perm.VIEW_ORG)
def fetch_job_status(request: HttpRequest, server_id: int, fetchjob_id: int) -> HttpResponse:
    """The draft card with one fetch job's progress (htmx polls it), or the whole page."""
    org = request.org  # type: ignore[attr-defined]
    server = selectors.server_get(org=org, id=server_id)
    job = selectors.fetch_job_get(org=org, id=fetchjob_id, server=server)
    ctx = _detail_context(request, server, fetch_job=job)
    template = "catalog/server_detail.html#draft" if request.htmx else "catalog/server_detail.html"  # type: ignore[attr-defined]
    return render(request, template, ctx)


def _version_action(
    request: HttpRequest, server_id: int, serverversion_id: int, action: str
) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    server = selectors.server_get(org=org, id=server_id)
    version = selectors.version_get(org=org, id=serverversion_id, server=server)
    form = ReviewForm(request.POST)
    form.is_valid()
    data = form.cleaned_data
    try:
        if action == "submit":
            services.version_submit(
                org=org, actor=request.user, version=version, note=data.get("note", "")
            )
            messages.success(request, f"Version {version.number} is submitted for review.")
            return redirect("catalog:server_detail", org.slug, server.pk)
        if action == "withdraw":
            services.version_withdraw(
                org=org, actor=request.user, version=version, note=data.get("note", "")
            )
            messages.success(
                request, f"Version {version.number} is withdrawn from review and back to draft."
            )
            return redirect("catalog:server_detail", org.slug, server.pk)
        if action == "approve":
            services.version_approve(
                org=org,
                actor=request.user,
                version=version,
                note=data.get("note", ""),
                acknowledge_findings=data.get("acknowledge_findings", False),
            )
            messages.success(
                request,
                f"{server.name} version {version.number} is approved; its tool definitions are pinned.",
            )
        elif action == "reject":
            services.version_reject(
                org=org, actor=request.user, version=version, note=data.get("note", "")
            )
            messages.success(request, f"{server.name} version {version.number} is rejected.")
    except DomainError as exc:
        messages.error(request, exc.message)
    return redirect("catalog:version_detail", org.slug, server.pk, version.pk)


@org_view(Perm.SUBMIT_SERVER)
@require_POST
def version_submit(request: HttpRequest, server_id: int, serverversion_id: int) -> HttpResponse:
    return _version_action(request, server_id, serverversion_id, "submit")


@org_view(Perm.SUBMIT_SERVER)
@require_POST
def version_withdraw(request: HttpRequest, server_id: int, serverversion_id: int) -> HttpResponse:
    return _version_action(request, server_id, serverversion_id, "withdraw")


@org_view(Perm.APPROVE_SERVER)
@require_POST
def version_approve(request: HttpRequest, server_id: int, serverversion_id: int) -> HttpResponse:
    return _version_action(request, server_id, serverversion_id, "approve")


@org_view(Perm.APPROVE_SERVER)
@require_POST
def version_reject(request: HttpRequest, server_id: int, serverversion_id: int) -> HttpResponse:
    return _version_action(request, server_id, serverversion_id, "reject")


@org_view(Perm.VIEW_ORG)
def version_detail(request: HttpRequest, server_id: int, serverversion_id: int) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    server = selectors.server_get(org=org, id=server_id)
    version = selectors.version_get(org=org, id=serverversion_id, server=server)
    tools = selectors.tools_for_version(version=version)
    context = {
        "nav": "reviews",
        "server": server,
        "version": version,
        "tools": tools,
        "diff": selectors.version_diff(version=version),
        "can_approve": _can_approve(request) and version.status == VersionStatus.SUBMITTED,
        "is_submitter": version.submitted_by_id == request.user.pk,
        "can_withdraw": version.status == VersionStatus.SUBMITTED
        and request.user.pk in (server.owner_id, version.submitted_by_id),
        "can_edit": _can_edit(request, server),
        "review_form": ReviewForm(),
        "findings_by_tool": _findings_by_tool(version.findings),
    }
    return render(request, "catalog/version_detail.html", context)


def _findings_by_tool(findings: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for finding in findings:
        out.setdefault(finding["tool"], []).append(finding)
    return out


def _lifecycle(request: HttpRequest, server_id: int, action: str) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    server = selectors.server_get(org=org, id=server_id)
    form = ReasonForm(request.POST)
    reason = form.data.get("reason", "")
    service = services.server_deprecate if action == "deprecate" else services.server_retire
    try:
        service(org=org, actor=request.user, server=server, reason=reason)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"{server.name} is {'deprecated' if action == 'deprecate' else 'retired'}."
        )
    return redirect("catalog:server_detail", org.slug, server.pk)


@org_view(Perm.APPROVE_SERVER)
@require_POST
def server_deprecate(request: HttpRequest, server_id: int) -> HttpResponse:
    return _lifecycle(request, server_id, "deprecate")


@org_view(Perm.APPROVE_SERVER)
@require_POST
def server_retire(request: HttpRequest, server_id: int) -> HttpResponse:
    return _lifecycle(request, server_id, "retire")


@org_view(Perm.VIEW_ORG)
def review_queue(request: HttpRequest) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    context = {
        "nav": "reviews",
        "queue": selectors.review_queue(org=org),
        "drifted": selectors.drift_attention(org=org),
    }
    return render(request, "catalog/review_queue.html", context)


@org_view(Perm.VIEW_ORG)
def tool_search(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:200]
    results = selectors.tool_search(org=request.org, query=query) if query else []  # type: ignore[attr-defined]
    context = {"nav": "tools", "q": query, "results": results}
    template = "catalog/tool_search.html#results" if request.htmx else "catalog/tool_search.html"  # type: ignore[attr-defined]
    return render(request, template, context)
