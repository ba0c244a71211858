"""Factories for the credentials app's tenant-owned models (used by the generic isolation test:
each takes `organization=` and builds everything inside that organization)."""

import hashlib
import secrets

import factory
from django.utils import timezone

from credentials import vault
from credentials.models import (
    Connection,
    OAuthProvider,
    OrgDataKey,
    PendingAuthorization,
    TokenAuthMethod,
)
from credentials.services import ACCESS_PURPOSE, REFRESH_PURPOSE
from tenants.models import Membership
from tests.factories import OrganizationFactory, UserFactory


class OrgDataKeyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OrgDataKey

    organization = factory.SubFactory(OrganizationFactory)

    @classmethod
    def _create(cls, model_class: type, *args: object, **kwargs: object) -> OrgDataKey:
        org = kwargs["organization"]
        OrgDataKey.objects.filter(organization=org, active=True).update(active=False)
        return vault.create_data_key(org_id=org.pk)


class OAuthProviderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OAuthProvider

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Provider {n}")
    slug = factory.Sequence(lambda n: f"provider-{n}")
    issuer = "https://auth.example.test"
    authorization_endpoint = "https://auth.example.test/authorize"
    token_endpoint = "https://auth.example.test/token"
    revocation_endpoint = "https://auth.example.test/revoke"
    client_id = "gateway"
    token_endpoint_auth_method = TokenAuthMethod.NONE
    scopes = "tickets:read"


def _member_of(org: object) -> object:
    user = UserFactory()
    Membership.objects.create(organization=org, user=user, role="member")
    return user


class ConnectionFactory(factory.django.DjangoModelFactory):
    """A connection with real vault-encrypted tokens (`access_token`/`refresh_token` params)."""

    class Meta:
        model = Connection

    organization = factory.SubFactory(OrganizationFactory)
    provider = factory.SubFactory(
        OAuthProviderFactory, organization=factory.SelfAttribute("..organization")
    )
    user = factory.LazyAttribute(lambda o: _member_of(o.organization))
    access_token = factory.LazyFunction(lambda: "at-" + secrets.token_urlsafe(16))
    refresh_token = factory.LazyFunction(lambda: "rt-" + secrets.token_urlsafe(16))
    expires_at = factory.LazyFunction(lambda: timezone.now() + timezone.timedelta(hours=1))
    scopes = "tickets:read"
    consent_client_id = "gateway"
    consent_scopes = "tickets:read"

    @classmethod
    def _create(cls, model_class: type, *args: object, **kwargs: object) -> Connection:
        access = kwargs.pop("access_token", None)
        refresh = kwargs.pop("refresh_token", None)
        conn = model_class(**kwargs)
        org = conn.organization
        if access:
            conn.access_token_blob = vault.encrypt(
                org=org, purpose=ACCESS_PURPOSE, row_uid=conn.uid, plaintext=access
            )
        if refresh:
            conn.refresh_token_blob = vault.encrypt(
                org=org, purpose=REFRESH_PURPOSE, row_uid=conn.uid, plaintext=refresh
            )
        conn.save()
        return conn


class PendingAuthorizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PendingAuthorization

    organization = factory.SubFactory(OrganizationFactory)
    provider = factory.SubFactory(
        OAuthProviderFactory, organization=factory.SelfAttribute("..organization")
    )
    user = factory.LazyAttribute(lambda o: _member_of(o.organization))
    state_hash = factory.LazyFunction(lambda: hashlib.sha256(secrets.token_bytes(16)).hexdigest())
    session_binding_hash = factory.LazyFunction(
        lambda: hashlib.sha256(secrets.token_bytes(16)).hexdigest()
    )
    code_verifier_blob = "v1:0:x:y"
    redirect_uri = "http://127.0.0.1:8000/oauth/callback"
    expires_at = factory.LazyFunction(lambda: timezone.now() + timezone.timedelta(minutes=10))
