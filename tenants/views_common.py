"""Small helpers shared by the tenants views."""

from django import forms
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseNotAllowed

from tenants.errors import DomainError
from tenants.permissions import Perm, role_has


def require_role_perm(request: HttpRequest, perm: Perm) -> None:
    """403 unless the member's role grants `perm` (for views whose GET is open to every member
    but whose POST needs more). The services check again: this only gives a clear page early."""
    membership = request.membership  # type: ignore[attr-defined]
    if not role_has(membership.role, perm):
        raise PermissionDenied(
            f"Your role ({membership.get_role_display()}) cannot {perm.value.replace('_', ' ')}."
        )


def post_only(request: HttpRequest) -> HttpResponseNotAllowed | None:
    """A 405 for anything but POST. Views call it *after* fetching their objects, so that an id
    of another organization answers 404 whatever the method."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    return None


def add_domain_error(form: forms.Form, exc: DomainError) -> None:
    """Show a service's refusal on the form: on its field when the form has one."""
    field = exc.field if exc.field in form.fields else None
    form.add_error(field, exc.message)
