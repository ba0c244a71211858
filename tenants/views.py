"""Tenants pages: start page, org dashboard, invitation acceptance."""

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from tenants import services
from tenants.dashboard import panels_for
from tenants.decorators import org_view
from tenants.errors import DomainError
from tenants.forms import AcceptInvitationForm, OrgCreateForm
from tenants.models import User
from tenants.selectors import orgs_for_user


@login_required
@require_http_methods(["GET", "POST"])
def home(request: HttpRequest) -> HttpResponse:
    orgs = list(orgs_for_user(user=request.user))
    if len(orgs) == 1 and request.method == "GET":
        return redirect("tenants:dashboard", orgs[0].slug)
    form = OrgCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            org = services.org_create(owner=request.user, **form.cleaned_data)
        except DomainError as exc:
            form.add_error(exc.field, exc.message)
        else:
            messages.success(request, f"{org.name} is ready. Invite your team next.")
            return redirect("tenants:dashboard", org.slug)
    return render(request, "tenants/home.html", {"orgs": orgs, "form": form})


@org_view()
def dashboard(request: HttpRequest) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    context = {
        "nav": "dashboard",
        "member_count": org.memberships.count(),
        "agent_count": org.agents.filter(is_active=True).count(),
        "panels": panels_for(request),
    }
    return render(request, "tenants/dashboard.html", context)


@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    invitation = services.invitation_for_token(token)
    if invitation is None or invitation.status != "pending":
        status = invitation.status if invitation else "invalid"
        return render(
            request,
            "tenants/invitation_invalid.html",
            {"status": status},
            status=410 if invitation else 404,
        )
    user = request.user if request.user.is_authenticated else None
    existing = User.objects.filter(email__iexact=invitation.email).first()
    form = AcceptInvitationForm(request.POST or None) if user is None and existing is None else None
    if request.method == "POST":
        try:
            with transaction.atomic():
                if user is None and existing is None:
                    if not form.is_valid():  # type: ignore[union-attr]
                        raise ValidationError("form")
                    user = User(email=invitation.email, name=form.cleaned_data["name"])  # type: ignore[union-attr]
                    try:
                        validate_password(form.cleaned_data["password1"], user)  # type: ignore[union-attr]
                    except ValidationError as exc:
                        form.add_error("password1", exc)  # type: ignore[union-attr]
                        raise
                    user.set_password(form.cleaned_data["password1"])  # type: ignore[union-attr]
                    user.save()
                elif user is None:
                    messages.info(
                        request, f"Sign in as {invitation.email} to accept the invitation."
                    )
                    return redirect(f"/accounts/login/?next=/invite/{token}/")
                membership = services.invitation_accept(token=token, user=user)
        except ValidationError:
            pass
        except DomainError as exc:
            messages.error(request, exc.message)
        else:
            if not request.user.is_authenticated:
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, f"Welcome to {membership.organization.name}.")
            return redirect("tenants:dashboard", membership.organization.slug)
    return render(
        request,
        "tenants/invitation_accept.html",
        {
            "invitation": invitation,
            "form": form,
            "needs_login": user is None and existing is not None,
        },
    )
