"""Teams of an organization: list, create, and pick members."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from tenants import services
from tenants.decorators import org_view
from tenants.errors import DomainError
from tenants.forms import TeamCreateForm, TeamMembersForm
from tenants.permissions import Perm
from tenants.selectors import team_get, teams_for_org
from tenants.views_common import add_domain_error, require_role_perm


@org_view()
def teams(request: HttpRequest) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    if request.method not in ("GET", "POST"):
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    form = TeamCreateForm(request.POST or None)
    if request.method == "POST":
        require_role_perm(request, Perm.MANAGE_TEAMS)
        if form.is_valid():
            try:
                team = services.team_create(org=org, actor=request.user, **form.cleaned_data)
            except DomainError as exc:
                add_domain_error(form, exc)
            else:
                messages.success(request, f"Team {team.name} created. Add its members.")
                return redirect("tenants:team-detail", org.slug, team.pk)
    context = {"nav": "teams", "teams": teams_for_org(org=org), "form": form}
    return render(request, "tenants/teams.html", context)


@org_view()
def team_detail(request: HttpRequest, team_id: int) -> HttpResponse:
    org = request.org  # type: ignore[attr-defined]
    team = team_get(org=org, id=team_id)
    if request.method not in ("GET", "POST"):
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    if request.method == "POST":
        require_role_perm(request, Perm.MANAGE_TEAMS)
        form = TeamMembersForm(request.POST, org=org)
        if form.is_valid():
            try:
                services.team_set_members(
                    org=org, actor=request.user, team=team, users=list(form.cleaned_data["members"])
                )
            except DomainError as exc:
                add_domain_error(form, exc)
            else:
                messages.success(request, f"Members of {team.name} saved.")
                return redirect("tenants:team-detail", org.slug, team.pk)
    else:
        form = TeamMembersForm(initial={"members": list(team.members.all())}, org=org)
    context = {
        "nav": "teams",
        "team": team,
        "form": form,
        "team_members": team.members.order_by("email"),
        "team_agents": team.agents.order_by("name"),
    }
    return render(request, "tenants/team_detail.html", context)
