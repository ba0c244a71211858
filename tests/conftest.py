"""Shared fixtures: the personas every test speaks in.

alice: owner of org A ("acme"); bob: member of org A; charlie: owner of org B ("globex").
Plus api clients and a helper that snapshots row counts to prove bad input changed nothing.
"""

from collections.abc import Callable, Iterator

import pytest
from django.apps import apps
from django.test import Client
from rest_framework.test import APIClient

from tenants.models import Membership, Organization, User
from tenants.permissions import Role
from tests.factories import (
    MembershipFactory,
    OrganizationFactory,
    PersonalAccessTokenFactory,
    UserFactory,
)

pytest_plugins = ["tests.peers.fixtures"]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:  # type: ignore[no-untyped-def]
    # The default hasher costs ~1 s per persona on a busy 2-core machine; tests of password
    # handling do not depend on the work factor.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def celery_eager() -> Iterator[None]:
    """Run Celery tasks inline (where no worker runs: the browser tests' live server)."""
    from config.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


@pytest.fixture
def org_a(db: None) -> Organization:
    return OrganizationFactory(name="Acme", slug="acme")


@pytest.fixture
def org_b(db: None) -> Organization:
    return OrganizationFactory(name="Globex", slug="globex")


@pytest.fixture
def alice(org_a: Organization) -> User:
    user = UserFactory(email="alice@acme.test", name="Alice")
    MembershipFactory(organization=org_a, user=user, role=Role.OWNER)
    return user


@pytest.fixture
def bob(org_a: Organization) -> User:
    user = UserFactory(email="bob@acme.test", name="Bob")
    MembershipFactory(organization=org_a, user=user, role=Role.MEMBER)
    return user


@pytest.fixture
def charlie(org_b: Organization) -> User:
    user = UserFactory(email="charlie@globex.test", name="Charlie")
    MembershipFactory(organization=org_b, user=user, role=Role.OWNER)
    return user


@pytest.fixture
def member_with_role(org_a: Organization) -> Callable[[str], User]:
    """A fresh user of org A with the given role (owner, admin, approver, auditor, member)."""

    def make(role: str) -> User:
        user = UserFactory(email=f"{role}-{User.objects.count()}@acme.test")
        Membership.objects.create(organization=org_a, user=user, role=role)
        return user

    return make


@pytest.fixture
def client_as() -> Callable[[User], Client]:
    def make(user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def api_as() -> Callable[[User], APIClient]:
    """An API client authenticated with a real personal access token of `user`."""

    def make(user: User) -> APIClient:
        _, plaintext = PersonalAccessTokenFactory.issue(user=user)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
        return client

    return make


@pytest.fixture
def row_counts() -> Callable[[], dict[str, int]]:
    """Row counts of every model of ours: compare before/after to prove nothing changed."""

    ours = {"tenants", "audit", "credentials", "catalog", "policies", "gateway"}

    def snapshot() -> dict[str, int]:
        return {
            model._meta.label: model._default_manager.count()
            for model in apps.get_models()
            if model._meta.app_label in ours
        }

    return snapshot
