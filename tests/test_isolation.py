"""Tenant isolation, proven for every route.

This test walks every URL pattern of the project (web UI and REST API, including routes added
later: nothing here lists them), fills the organization slug and every object id from the
*other* organization, and asserts that the signed-in user of org A gets 404 (or 403 / 405) for
every HTTP method, never a 2xx, a redirect or a 500, and that nothing changed in the database.

Conventions it relies on (see CONTRIBUTING in the README):
- the organization in a URL is the kwarg `org_slug`;
- an object id in a URL is the kwarg `<model._meta.model_name>_id`, and a factory named
  `<Model>Factory` taking `organization=` lives in `tests/factories.py` or
  `tests/<app>/factories.py`. A route whose kwarg cannot be mapped fails this test loudly.
"""

import importlib
import pkgutil
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.apps import apps
from django.db import models
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

import tests
from tests.factories import PersonalAccessTokenFactory

OUR_APPS = ("tenants", "audit", "credentials", "catalog", "policies", "gateway")
METHODS = ("get", "post", "put", "patch", "delete")
ALLOWED_STATUSES = {403, 404, 405}
_KWARG_RE = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")


@dataclass(frozen=True)
class Route:
    template: str  # e.g. "api/v1/orgs/<slug:org_slug>/agents/<int:agent_id>/"
    name: str
    kwargs: tuple[str, ...]


def _walk(resolver: URLResolver, prefix: str = "") -> Iterator[tuple[str, str]]:
    for entry in resolver.url_patterns:
        pattern = entry.pattern
        text = str(pattern)
        if hasattr(pattern, "_regex") and not hasattr(pattern, "_route"):
            # A regex pattern: keep it only if it is a plain literal (no groups) after the anchors.
            text = text.lstrip("^").rstrip("$")
            if any(ch in text for ch in "()[]?*+\\"):
                continue
        if isinstance(entry, URLResolver):
            yield from _walk(entry, prefix + text)
        elif isinstance(entry, URLPattern):
            yield prefix + text, entry.name or ""


def all_scoped_routes() -> list[Route]:
    """Every route with an organization or an object id in it."""
    routes = {}
    for template, name in _walk(get_resolver()):
        kwargs = tuple(m.group("name") for m in _KWARG_RE.finditer(template))
        if "org_slug" in kwargs or any(k.endswith("_id") for k in kwargs):
            routes[template] = Route(template=template, name=name, kwargs=kwargs)
    return sorted(routes.values(), key=lambda r: r.template)


def _model_for(kwarg: str) -> type[models.Model]:
    model_name = kwarg.removesuffix("_id")
    for model in apps.get_models():
        if model._meta.app_label in OUR_APPS and model._meta.model_name == model_name:
            return model
    raise LookupError(
        f"URL kwarg '{kwarg}' does not name a model of ours: name object ids "
        f"'<model._meta.model_name>_id' so this test can fill them."
    )


def _factories() -> dict[str, Any]:
    found: dict[str, Any] = {}
    modules = ["tests.factories"] + [
        f"tests.{info.name}.factories"
        for info in pkgutil.iter_modules(tests.__path__)
        if info.ispkg
    ]
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        found.update({name: obj for name, obj in vars(module).items() if name.endswith("Factory")})
    return found


def _foreign_object(model: type[models.Model], org_b: Any, charlie: Any) -> models.Model:
    factory = _factories().get(f"{model.__name__}Factory")
    if factory is None:
        raise LookupError(
            f"No {model.__name__}Factory in tests/factories.py or tests/<app>/factories.py."
        )
    field_names = {f.name for f in model._meta.get_fields()}
    if "organization" in field_names:
        return factory(organization=org_b)
    if "user" in field_names:  # user-owned (personal tokens): another user's object
        return factory(user=charlie)
    return factory()


def _fill(route: Route, org_slug: str, ids: dict[str, Any]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name == "org_slug":
            return org_slug
        if name in ids:
            return str(ids[name])
        return "999999" if match.group("converter") in ("int", "path") else "does-not-exist"

    return "/" + _KWARG_RE.sub(replace, route.template)


def _foreign_ids(route: Route, org_b: Any, charlie: Any) -> dict[str, Any]:
    """Objects of org B for every `<model>_id` kwarg, consistent with each other (a key's agent
    id is that key's agent), so the view gets as far as it can before it must refuse."""
    objects: dict[str, models.Model] = {}
    for kwarg in route.kwargs:
        if kwarg.endswith("_id"):
            objects[kwarg] = _foreign_object(_model_for(kwarg), org_b, charlie)
    for obj in list(objects.values()):
        for kwarg in objects:
            target = _model_for(kwarg)
            for field in obj._meta.concrete_fields:
                if isinstance(field, models.ForeignKey) and field.related_model is target:
                    objects[kwarg] = getattr(obj, field.name)
    return {kwarg: obj.pk for kwarg, obj in objects.items()}


ROUTES = all_scoped_routes()


def test_the_walk_finds_the_routes_we_know() -> None:
    # Guards the walker itself: if it found nothing, every other test here would pass vacuously.
    templates = {route.template for route in ROUTES}
    assert "o/<slug:org_slug>/" in templates
    assert len(ROUTES) >= 5


def _counts() -> dict[str, int]:
    # Audit rows may record a refusal; anything else changing is a leak across tenants.
    return {
        m._meta.label: m._default_manager.count()
        for m in apps.get_models()
        if m._meta.app_label in OUR_APPS and m._meta.label != "audit.AuditEvent"
    }


@pytest.mark.django_db
@pytest.mark.parametrize("route", ROUTES, ids=[r.template for r in ROUTES])
def test_other_tenants_objects_are_unreachable(route: Route, org_a, org_b, alice, charlie) -> None:
    ids = _foreign_ids(route, org_b, charlie)
    is_api = route.template.startswith("api/")
    if is_api:
        client: Client | APIClient = APIClient()
        _, token = PersonalAccessTokenFactory.issue(user=alice)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    else:
        client = Client()
        client.force_login(alice)

    # Alice's own org with org B's object ids, and org B's slug itself (she is not a member).
    urls = {_fill(route, org_b.slug, ids)}
    if "org_slug" in route.kwargs and ids:
        urls.add(_fill(route, org_a.slug, ids))
    if "org_slug" not in route.kwargs:
        urls = {_fill(route, org_a.slug, ids)}

    before = _counts()
    failures = []
    for url in sorted(urls):
        for method in METHODS:
            kwargs: dict[str, Any] = {"format": "json", "data": {}} if is_api else {}
            response = getattr(client, method)(url, **kwargs)
            if response.status_code not in ALLOWED_STATUSES:
                failures.append(f"{method.upper()} {url} -> {response.status_code}")
    assert not failures, "Cross-tenant access was not refused:\n" + "\n".join(failures)
    assert _counts() == before, "A refused cross-tenant request changed the database"


@pytest.mark.django_db
def test_agent_key_of_another_org_is_refused_by_the_api(org_a, org_b, alice) -> None:
    from tests.factories import AgentFactory, AgentKeyFactory

    _, plaintext = AgentKeyFactory.issue(agent=AgentFactory(organization=org_b))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    response = client.get(f"/api/v1/orgs/{org_a.slug}/")
    assert response.status_code == 401
    response = client.get(f"/api/v1/orgs/{org_b.slug}/")
    assert response.status_code == 401, "agent keys are for the MCP endpoint, not the REST API"
