from django.http import HttpRequest

from tenants.permissions import ROLE_PERMISSIONS
from tenants.selectors import orgs_for_user


def current_org(request: HttpRequest) -> dict:
    """The organization of the page (set by @org_view), the user's orgs for the switcher, and the
    permissions of the user's role, so templates show only the buttons that will work."""
    org = getattr(request, "org", None)
    membership = getattr(request, "membership", None)
    perms = {p.value for p in ROLE_PERMISSIONS.get(membership.role, ())} if membership else set()
    user = getattr(request, "user", None)
    return {
        "org": org,
        "membership": membership,
        "perms": perms,
        "my_orgs": orgs_for_user(user=user) if user is not None and user.is_authenticated else [],
    }
