from collections.abc import Callable
from pathlib import Path

import pytest

from catalog import services
from catalog.models import Server, ServerVersion
from tenants.models import Organization, User

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _eager_celery(celery_eager: None) -> None:
    """Tasks queued by the catalog (fetch jobs, drift syncs) run inline in tests."""


@pytest.fixture(autouse=True)
def _catalog_settings(settings: pytest.FixtureRequest) -> None:
    # Test peers listen on 127.0.0.1: allow loopback explicitly (the SSRF tests turn it off).
    settings.CATALOG_ALLOW_LOOPBACK = True
    settings.CATALOG_ALLOW_PRIVATE_NETWORKS = False
    settings.CATALOG_REQUIRE_SANDBOX = True
    # The repo's own stdio peers (fault server, demo servers) import from tests/ and demo/.
    settings.CATALOG_SANDBOX_RO_PATHS = [str(REPO / "tests"), str(REPO / "demo"), "/tmp"]
    # Fast password hashing: personas are created in every test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def approver(member_with_role: Callable[[str], User]) -> User:
    return member_with_role("approver")


@pytest.fixture
def http_server(org_a: Organization, bob: User) -> Callable[..., Server]:
    """A draft HTTP server owned by bob pointing at `url`."""

    def make(url: str, slug: str = "faulty", **kwargs: object) -> Server:
        return services.server_create(
            org=org_a, actor=bob, name=slug.title(), slug=slug, url=url, **kwargs
        )

    return make


@pytest.fixture
def approved_server(
    org_a: Organization, bob: User, approver: User, http_server: Callable[..., Server]
) -> Callable[..., Server]:
    """Register, fetch, submit (bob) and approve (approver) a server at `url`."""

    def make(url: str, slug: str = "faulty") -> Server:
        server = http_server(url, slug=slug)
        version = services.server_fetch_tools(org=org_a, actor=bob, server=server)
        services.version_submit(org=org_a, actor=bob, version=version)
        services.version_approve(
            org=org_a, actor=approver, version=version, acknowledge_findings=True
        )
        server.refresh_from_db()
        return server

    return make


def open_version(server: Server) -> ServerVersion | None:
    return ServerVersion.objects.filter(server=server, status__in=["draft", "submitted"]).first()
