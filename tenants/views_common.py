"""Small helpers shared by the tenants views."""

import secrets

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


# One-time form nonces for the forms that reveal a secret once (agent keys, personal tokens).
# The secret is rendered in the POST's own response (never stored, not even in the session), so a
# browser reload re-submits the form; the nonce turns that re-submission into a clear message
# instead of a second, silently created key. The nonce itself is not a secret.
_NONCES_KEY = "one_time_form_nonces"
_MAX_NONCES = 20


def issue_form_nonce(request: HttpRequest) -> str:
    nonce = secrets.token_urlsafe(16)
    nonces = [*request.session.get(_NONCES_KEY, []), nonce][-_MAX_NONCES:]
    request.session[_NONCES_KEY] = nonces
    return nonce


def form_was_already_submitted(request: HttpRequest) -> bool:
    """True when the POST carries a nonce that was used before (a reload or a double click).
    A POST without a nonce (scripts, the API-like clients) is not a re-submission."""
    nonce = request.POST.get("form_nonce", "")
    if not nonce:
        return False
    nonces = request.session.get(_NONCES_KEY, [])
    if nonce not in nonces:
        return True
    nonces.remove(nonce)
    request.session[_NONCES_KEY] = nonces
    return False
