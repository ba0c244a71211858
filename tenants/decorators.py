"""The one view-side choke point for tenant scoping in the web UI."""

import functools
from collections.abc import Callable

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from tenants.permissions import Perm, role_has
from tenants.selectors import org_membership_for_slug


def org_view(perm: Perm = Perm.VIEW_ORG) -> Callable:
    """Resolve `org_slug` from the URL against the signed-in user's memberships (404 when the
    user is not a member: a foreign org looks like a missing one), then require `perm`
    (403: the user is a member, so the org's existence is no secret to them)."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(
            request: HttpRequest, org_slug: str, *args: object, **kwargs: object
        ) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            org, membership = org_membership_for_slug(user=request.user, slug=org_slug)
            request.org = org  # type: ignore[attr-defined]
            request.membership = membership  # type: ignore[attr-defined]
            if not role_has(membership.role, perm):
                raise PermissionDenied(
                    f"Your role ({membership.get_role_display()}) cannot {perm.value.replace('_', ' ')}."
                )
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
