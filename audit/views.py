"""The auditor's pages: the trail with filters and keyset paging, an event with its request
correlation, streamed exports with manifests, retention, and the metrics dashboard."""

import json
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from audit import metrics as metrics_mod
from audit import retention
from audit.errors import AuditError
from audit.export import audit_export_start, export_chunks, export_chunks_async
from audit.filters import AuditFilterForm, AuditQuery
from audit.forms import RetentionForm
from audit.models import AuditExport, ExportFormat
from audit.selectors import (
    audit_correlated_events,
    audit_event_get,
    audit_events_page,
    audit_export_get,
    latest_seal,
)
from tenants.decorators import org_view
from tenants.permissions import Perm, role_has

_CONTENT_TYPES = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.JSONL: "application/x-ndjson; charset=utf-8",
}


def _parse_before(raw: str | None) -> tuple[int | None, str | None]:
    if not raw:
        return None, None
    if not raw.isdigit() or len(raw) > 19:
        return None, "The page position is not valid; showing the newest events."
    return int(raw), None


@require_GET
@org_view(Perm.READ_AUDIT)
def audit_list(request: HttpRequest) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    form = AuditFilterForm(request.GET or None)
    before, before_error = _parse_before(request.GET.get("before"))
    page = None
    query_error = None
    query = AuditQuery()
    if form.is_bound and not form.is_valid():
        pass  # the form shows its errors; no query runs on bad input
    else:
        query = form.to_query() if form.is_bound else AuditQuery()
        try:
            page = audit_events_page(org=org, query=query, before=before)
        except AuditError as exc:
            query_error = exc.message
    params = query.as_params()
    context = {
        "nav": "audit",
        "form": form,
        "page": page,
        "query_error": query_error or before_error,
        "filter_qs": urlencode(params),
        "filtered": bool(params),
        "can_export": role_has(request.membership.role, Perm.EXPORT_AUDIT),  # type: ignore[attr-defined]
    }
    if request.htmx and before is not None:  # type: ignore[attr-defined]
        return render(request, "audit/list.html#rows", context)
    return render(request, "audit/list.html", context, status=200)


def _story(events: list) -> dict | None:
    """The tool call of a request read as a chain: who -> agent -> tool -> upstream -> credential."""
    call = next((e for e in events if e.action == "tool.call"), None)
    if call is None:
        return None
    details = call.details or {}
    credential = details.get("credential") or details.get("connection") or ""
    if not credential:
        used = next((e for e in events if e.action.startswith("credential.")), None)
        credential = used.target_label if used else ""
    return {
        "user": call.on_behalf_of_label or call.actor_label,
        "agent": call.agent_label,
        "call": call,
        "reasons": details.get("reasons") or [],
        "matched_rules": details.get("matched_rules") or [],
        "credential": credential,
    }


@require_GET
@org_view(Perm.READ_AUDIT)
def audit_detail(request: HttpRequest, auditevent_id: int) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    event = audit_event_get(org=org, id=auditevent_id)
    related = audit_correlated_events(org=org, event=event)
    context = {
        "nav": "audit",
        "event": event,
        "related": related,
        "story": _story(related),
        "details_json": json.dumps(event.details, indent=2, sort_keys=True, ensure_ascii=False),
    }
    return render(request, "audit/detail.html", context)


@require_GET
@org_view(Perm.EXPORT_AUDIT)
def audit_export(request: HttpRequest) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    params = request.GET.copy()
    fmt = params.pop("format", [""])[-1]
    params.pop("before", None)
    form = AuditFilterForm(params)
    back = reverse("audit:list", args=[org.slug]) + "?" + params.urlencode()
    if not form.is_valid():
        messages.error(request, "Fix the filters before exporting.")
        return redirect(back)
    query = form.to_query()
    try:
        export = audit_export_start(org=org, actor=request.user, fmt=fmt, query=query)
    except AuditError as exc:
        messages.warning(request, exc.message)
        return redirect(back)
    is_async = request.__class__.__name__ == "ASGIRequest"
    chunks = export_chunks_async(export, query) if is_async else export_chunks(export, query)
    response = StreamingHttpResponse(chunks, content_type=_CONTENT_TYPES[export.format])
    response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
    response["X-Audit-Export-Id"] = str(export.pk)
    response["X-Audit-Manifest-URL"] = reverse("audit:export-manifest", args=[org.slug, export.pk])
    return response


@require_GET
@org_view(Perm.EXPORT_AUDIT)
def audit_export_list(request: HttpRequest) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    exports = AuditExport.objects.for_org(org).order_by("-id")[:50]
    return render(
        request,
        "audit/exports.html",
        {"nav": "audit", "exports": exports, "seal": latest_seal(org_id=org.id)},
    )


@require_GET
@org_view(Perm.EXPORT_AUDIT)
def audit_export_manifest(request: HttpRequest, auditexport_id: int) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    export = audit_export_get(org=org, id=auditexport_id)
    if export.completed_at is None:
        return JsonResponse(
            {"detail": "This export did not finish (the download was interrupted). Export again."},
            status=409,
        )
    response = JsonResponse(export.manifest, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="manifest-{export.pk}.json"'
    return response


@require_http_methods(["GET", "POST"])
@org_view(Perm.READ_AUDIT)
def audit_retention(request: HttpRequest) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    can_edit = role_has(request.membership.role, Perm.MANAGE_ORG)  # type: ignore[attr-defined]
    current = retention.retention_for(org=org)
    form = RetentionForm(
        request.POST or None,
        initial={
            "retention_days": current.retention_days if current else None,
            "legal_hold": current.legal_hold if current else False,
            "hold_reason": current.hold_reason if current else "",
        },
    )
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied("Only an owner can change audit retention.")
        if form.is_valid():
            try:
                retention.retention_set(org=org, actor=request.user, **form.cleaned_data)
            except AuditError as exc:
                form.add_error(exc.field, exc.message)
            else:
                messages.success(request, "Audit retention saved.")
                return redirect("audit:retention", org.slug)
    return render(
        request,
        "audit/retention.html",
        {
            "nav": "audit",
            "form": form,
            "current": current,
            "can_edit": can_edit,
            "purges": retention.purge_history(org=org),
        },
    )


@require_GET
@org_view(Perm.READ_AUDIT)
def audit_metrics(request: HttpRequest) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    hours = request.GET.get("hours", "24")
    if hours not in metrics_mod.WINDOWS:
        messages.warning(
            request, "Pick one of the offered time windows; showing the last 24 hours."
        )
        hours = "24"
    context = metrics_mod.dashboard(org=org, hours=int(hours))
    context.update({"nav": "audit-metrics", "hours": hours, "windows": metrics_mod.WINDOWS})
    return render(request, "audit/metrics.html", context)


def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    """/metrics for Prometheus: 404 unless METRICS_TOKEN is set, then a bearer token is required."""
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    return metrics_mod.prometheus_response(request)
