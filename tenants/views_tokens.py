"""The signed-in user's personal access tokens for the REST API (not tied to an organization)."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from tenants import services
from tenants.errors import DomainError
from tenants.forms import TokenCreateForm
from tenants.selectors import token_get, tokens_for_user
from tenants.views_common import (
    add_domain_error,
    form_was_already_submitted,
    issue_form_nonce,
    post_only,
)


@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "POST"):
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    if request.method == "POST" and form_was_already_submitted(request):
        messages.warning(
            request,
            "That form was already submitted (a reload or a double click), so no second token was "
            "created. A token is shown only once: if you did not copy it, revoke it and create another.",
        )
        return redirect("tenants:tokens")
    form = TokenCreateForm(request.POST or None)
    context: dict = {"form": form, "api_base": f"{settings.SITE_URL}/api/v1/"}
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            token, plaintext = services.personal_token_create(
                user=request.user, **form.cleaned_data
            )
        except DomainError as exc:
            add_domain_error(form, exc)
        else:
            # Shown in this response only: we keep the prefix and a hash.
            context.update(new_token=token, new_token_plaintext=plaintext, form=TokenCreateForm())
            status = 201
    context["tokens"] = tokens_for_user(user=request.user)
    context["form_nonce"] = issue_form_nonce(request)
    return render(request, "tenants/tokens.html", context, status=status)


@login_required
def token_revoke(request: HttpRequest, personalaccesstoken_id: int) -> HttpResponse:
    token = token_get(user=request.user, id=personalaccesstoken_id)
    if (not_allowed := post_only(request)) is not None:
        return not_allowed
    try:
        services.personal_token_revoke(user=request.user, token=token)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Token {token.name} ({token.prefix}…) revoked.")
    return redirect("tenants:tokens")
