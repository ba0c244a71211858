"""Members and invitations of an organization.

htmx: the invite form swaps the invitations panel (which then shows the accept link once), a
role change swaps its table row, a removal or a revocation removes its row. Without htmx the
same views answer with a full page or a redirect and a flash message.
"""

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django_htmx.http import HttpResponseClientRefresh

from tenants import services
from tenants.decorators import org_view
from tenants.errors import DomainError
from tenants.forms import InviteForm, RoleForm
from tenants.models import Membership
from tenants.permissions import ROLES_ASSIGNABLE_BY, Perm, Role
from tenants.selectors import invitation_get, invitations_for_org, member_get, members_for_org
from tenants.views_common import add_domain_error, post_only

TEMPLATE = "tenants/members.html"


def _assignable_roles(request: HttpRequest) -> list[tuple[str, str]]:
    allowed = ROLES_ASSIGNABLE_BY.get(request.membership.role, frozenset())  # type: ignore[attr-defined]
    return [(value, label) for value, label in Role.choices if value in allowed]


def _invite_form(request: HttpRequest, data: Any = None) -> InviteForm:
    form = InviteForm(data)
    form.fields["role"].choices = _assignable_roles(request) or Role.choices
    return form


def _context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    org = request.org  # type: ignore[attr-defined]
    context = {
        "nav": "members",
        "members": members_for_org(org=org),
        "invitations": invitations_for_org(org=org).filter(
            accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
        ),
        "invite_form": _invite_form(request),
        "assignable_roles": _assignable_roles(request),
        "assignable_values": {value for value, _ in _assignable_roles(request)},
    }
    context.update(extra)
    return context


@org_view()
def members(request: HttpRequest) -> HttpResponse:
    if request.method != "GET":
        return HttpResponse(status=405, headers={"Allow": "GET"})
    return render(request, TEMPLATE, _context(request))


@org_view(Perm.MANAGE_MEMBERS)
def invite(request: HttpRequest) -> HttpResponse:
    if (not_allowed := post_only(request)) is not None:
        return not_allowed
    form = _invite_form(request, request.POST)
    accept_url = None
    invited = None
    if form.is_valid():
        try:
            invited, accept_url = services.invitation_create(
                org=request.org,  # type: ignore[attr-defined]
                actor=request.user,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
            )
        except DomainError as exc:
            add_domain_error(form, exc)
        else:
            form = _invite_form(request)
    context = _context(request, invite_form=form, accept_url=accept_url, invited=invited)
    # The accept link exists only in this response (we keep its hash), so no redirect here.
    template = f"{TEMPLATE}#invitations" if request.htmx else TEMPLATE  # type: ignore[attr-defined]
    return render(request, template, context)


def _row_response(request: HttpRequest, membership: Membership, **extra: Any) -> HttpResponse:
    context = _context(request, m=membership, **extra)
    return render(request, f"{TEMPLATE}#member-row", context)


@org_view(Perm.MANAGE_MEMBERS)
def change_role(request: HttpRequest, membership_id: int) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    membership = member_get(org=org, id=membership_id)
    if (not_allowed := post_only(request)) is not None:
        return not_allowed
    form = RoleForm(request.POST)
    error = None
    if not form.is_valid():
        error = "Choose one of the listed roles."
    else:
        try:
            membership = services.membership_change_role(
                org=org, actor=request.user, membership=membership, role=form.cleaned_data["role"]
            )
        except DomainError as exc:
            error = exc.message
    if request.htmx:  # type: ignore[attr-defined]
        membership.refresh_from_db()
        notice = (
            None if error else f"{membership.user.email} is now {membership.get_role_display()}."
        )
        return _row_response(request, membership, row_error=error, row_notice=notice)
    if error:
        messages.error(request, error)
    else:
        messages.success(
            request, f"{membership.user.email} is now {membership.get_role_display()}."
        )
    return redirect("tenants:members", org.slug)


@org_view(Perm.MANAGE_MEMBERS)
def remove_member(request: HttpRequest, membership_id: int) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    membership = member_get(org=org, id=membership_id)
    if (not_allowed := post_only(request)) is not None:
        return not_allowed
    if membership.user_id == request.user.pk:
        messages.error(request, "To leave the organization use “Leave organization”.")
        return redirect("tenants:members", org.slug)
    email = membership.user.email
    try:
        services.membership_remove(org=org, actor=request.user, membership=membership)
    except DomainError as exc:
        if request.htmx:  # type: ignore[attr-defined]
            return _row_response(request, membership, row_error=exc.message)
        messages.error(request, exc.message)
        return redirect("tenants:members", org.slug)
    if request.htmx:  # type: ignore[attr-defined]
        return HttpResponse("")  # the row disappears
    messages.success(request, f"{email} was removed from {org.name}.")
    return redirect("tenants:members", org.slug)


@org_view()
def leave(request: HttpRequest) -> HttpResponse:
    if (not_allowed := post_only(request)) is not None:
        return not_allowed
    org = request.org  # type: ignore[attr-defined]
    try:
        services.membership_remove(org=org, actor=request.user, membership=request.membership)  # type: ignore[attr-defined]
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("tenants:members", org.slug)
    messages.success(request, f"You left {org.name}.")
    return redirect("tenants:home")


@org_view(Perm.MANAGE_MEMBERS)
def revoke_invitation(request: HttpRequest, invitation_id: int) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    invitation = invitation_get(org=org, id=invitation_id)
    if (not_allowed := post_only(request)) is not None:
        return not_allowed
    try:
        services.invitation_revoke(org=org, actor=request.user, invitation=invitation)
    except DomainError as exc:
        messages.error(request, exc.message)
        if request.htmx:  # type: ignore[attr-defined]
            return HttpResponseClientRefresh()  # show the flash message on the reloaded page
    else:
        if request.htmx:  # type: ignore[attr-defined]
            return HttpResponse("")
        messages.success(request, f"The invitation for {invitation.email} was revoked.")
    return redirect("tenants:members", org.slug)
