"""Credentials pages: the member's Connections (connect, consent callback, disconnect) and the
admins' OAuth providers. Thin: validate, call one service, render."""

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from credentials import rotation, selectors, services
from credentials.errors import ConsentFlowError
from credentials.forms import ProviderForm
from tenants.decorators import org_view
from tenants.errors import DomainError
from tenants.permissions import Perm

_PROVIDER_FIELDS = (
    "name",
    "slug",
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "revocation_endpoint",
    "introspection_endpoint",
    "client_id",
    "token_endpoint_auth_method",
    "scopes",
    "pkce_required",
    "resource",
)


# --- Member: connections ---------------------------------------------------------------------


@org_view(Perm.CONNECT_ACCOUNTS)
@require_GET
def connections(request: HttpRequest) -> HttpResponse:
    rows = selectors.connection_rows(org=request.org, user=request.user)  # type: ignore[attr-defined]
    return render(
        request,
        "credentials/connections.html",
        {"nav": "connections", "rows": rows, "redirect_uri": services.redirect_uri()},
    )


@org_view(Perm.CONNECT_ACCOUNTS)
@require_http_methods(["GET", "POST"])
def connect(request: HttpRequest, oauthprovider_id: int) -> HttpResponse:
    """GET: the consent page (what is asked, of whom, for what). POST: go to the provider."""
    provider = selectors.provider_get(org=request.org, id=oauthprovider_id)  # type: ignore[attr-defined]
    connection = selectors.connection_for(user=request.user, provider=provider)
    if request.method == "POST":
        try:
            url = services.authorization_start(
                provider=provider,
                user=request.user,
                session=request.session,
                return_to=request.POST.get("next", ""),
            )
        except DomainError as exc:
            messages.error(request, exc.message)
            return redirect("credentials:connections", request.org.slug)  # type: ignore[attr-defined]
        return redirect(url)
    rows = {r.provider.pk: r for r in selectors.connection_rows(org=request.org, user=request.user)}  # type: ignore[attr-defined]
    return render(
        request,
        "credentials/connect.html",
        {
            "nav": "connections",
            "provider": provider,
            "connection": connection,
            "row": rows.get(provider.pk),
            "redirect_uri": services.redirect_uri(),
            "next": request.GET.get("next", ""),
        },
    )


@require_GET
def oauth_callback(request: HttpRequest) -> HttpResponse:
    """Where every provider sends the browser back. The state names the org and provider."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    params = {k: request.GET.get(k, "") for k in ("state", "code", "error", "error_description")}
    if "iss" in request.GET:
        params["iss"] = request.GET["iss"]
    try:
        connection, return_to = services.authorization_complete(
            user=request.user, session=request.session, params=params
        )
    except ConsentFlowError as exc:
        return render(
            request,
            "credentials/consent_error.html",
            {"message": exc.message, "code": exc.code},
            status=400,
        )
    messages.success(
        request, f"{connection.provider.name} is connected. Agents acting for you can use it now."
    )
    if return_to:
        return redirect(return_to)
    return redirect("credentials:connections", connection.organization.slug)


@org_view(Perm.CONNECT_ACCOUNTS)
@require_http_methods(["GET", "POST"])
def disconnect(request: HttpRequest, connection_id: int) -> HttpResponse:
    connection = selectors.connection_get(
        org=request.org,  # type: ignore[attr-defined]
        id=connection_id,
        user=request.user,
    )
    if request.method == "GET":
        return render(
            request, "credentials/disconnect.html", {"nav": "connections", "connection": connection}
        )
    name = connection.provider.name
    try:
        done = services.connection_disconnect(connection=connection, actor=request.user)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        if done:
            messages.success(request, f"{name} is disconnected and the grant was revoked.")
        else:
            messages.warning(
                request,
                f"{name} is disconnected here and no longer used; the provider could not be "
                "reached to revoke the grant, so that is retried automatically.",
            )
    return redirect("credentials:connections", request.org.slug)  # type: ignore[attr-defined]


# --- Admin: providers ------------------------------------------------------------------------


@org_view(Perm.MANAGE_PROVIDERS)
@require_GET
def providers(request: HttpRequest) -> HttpResponse:
    items = selectors.provider_list(org=request.org)  # type: ignore[attr-defined]
    return render(
        request,
        "credentials/providers.html",
        {
            "nav": "providers",
            "providers": items,
            "redirect_uri": services.redirect_uri(),
            **_rotation_context(),
        },
    )


def _rotation_context() -> dict:
    job = selectors.rotation_latest()
    return {"rotation": job, "rotation_progress": rotation.progress(job) if job else 0}


@org_view(Perm.MANAGE_PROVIDERS)
@require_GET
def rotation_status(request: HttpRequest) -> HttpResponse:
    """The key rotation panel (polled by htmx while a rotation runs)."""
    return render(request, "credentials/providers.html#rotation", _rotation_context())


@org_view(Perm.MANAGE_PROVIDERS)
@require_http_methods(["GET", "POST"])
def provider_create(request: HttpRequest) -> HttpResponse:
    form = ProviderForm(request.POST or None, initial={"pkce_required": True})
    if request.method == "POST" and form.is_valid():
        data = {k: form.cleaned_data[k] for k in _PROVIDER_FIELDS}
        try:
            provider = services.provider_create(
                org=request.org,  # type: ignore[attr-defined]
                actor=request.user,
                client_secret=form.cleaned_data["client_secret"],
                **data,
            )
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, f"{provider.name} is registered.")
            return redirect("credentials:providers", request.org.slug)  # type: ignore[attr-defined]
    return render(
        request,
        "credentials/provider_form.html",
        {"nav": "providers", "form": form, "redirect_uri": services.redirect_uri()},
        status=400 if form.errors else 200,
    )


@org_view(Perm.MANAGE_PROVIDERS)
@require_http_methods(["GET", "POST"])
def provider_edit(request: HttpRequest, oauthprovider_id: int) -> HttpResponse:
    provider = selectors.provider_get(org=request.org, id=oauthprovider_id)  # type: ignore[attr-defined]
    initial = {k: getattr(provider, k) for k in _PROVIDER_FIELDS}
    form = ProviderForm(request.POST or None, initial=initial)
    form.fields["slug"].disabled = True
    if request.method == "POST" and form.is_valid():
        data = {k: form.cleaned_data[k] for k in _PROVIDER_FIELDS if k != "slug"}
        try:
            services.provider_update(
                provider=provider,
                actor=request.user,
                client_secret=form.cleaned_data["client_secret"],
                **data,
            )
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, f"{provider.name} is updated.")
            return redirect("credentials:providers", request.org.slug)  # type: ignore[attr-defined]
    return render(
        request,
        "credentials/provider_form.html",
        {
            "nav": "providers",
            "form": form,
            "provider": provider,
            "redirect_uri": services.redirect_uri(),
            "connection_count": provider.connections.count(),
        },
        status=400 if form.errors else 200,
    )


@org_view(Perm.MANAGE_PROVIDERS)
@require_POST
def provider_delete(request: HttpRequest, oauthprovider_id: int) -> HttpResponse:
    provider = selectors.provider_get(org=request.org, id=oauthprovider_id)  # type: ignore[attr-defined]
    name = provider.name
    try:
        services.provider_delete(provider=provider, actor=request.user)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{name} is deleted; its connections were revoked.")
    return redirect("credentials:providers", request.org.slug)  # type: ignore[attr-defined]
