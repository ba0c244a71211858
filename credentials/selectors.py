"""Reads of the credentials app. One access function per tenant-owned model: 404 for a missing
row and for another organization's (or another user's) row alike."""

from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet

from credentials.models import (
    Connection,
    ConnectionStatus,
    OAuthProvider,
    VaultRotation,
)
from credentials.usage import ProviderUsage, usages_for


def provider_get(*, org: Any, id: int) -> OAuthProvider:
    return OAuthProvider.objects.get_for_org_or_404(org, pk=id)


def provider_list(*, org: Any) -> QuerySet[OAuthProvider]:
    return OAuthProvider.objects.for_org(org).order_by("name")


def connection_get(*, org: Any, id: int, user: Any | None = None) -> Connection:
    """A connection of `org`; with `user`, only that user's own (a member never reaches another
    member's grant, not even by id)."""
    lookup: dict[str, Any] = {"pk": id}
    if user is not None:
        lookup["user"] = user
    return Connection.objects.select_related("provider").get_for_org_or_404(org, **lookup)


def connection_for(*, user: Any, provider: OAuthProvider) -> Connection | None:
    return Connection.objects.filter(user=user, provider=provider).first()


@dataclass
class ConnectionRow:
    """One line of a member's Connections page."""

    provider: OAuthProvider
    connection: Connection | None
    usages: list[ProviderUsage] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.connection.status if self.connection else "not_connected"

    @property
    def needs_action(self) -> bool:
        return self.connection is None or self.connection.status in (
            ConnectionStatus.NEEDS_RECONSENT,
            ConnectionStatus.ERROR,
        )


def connection_rows(*, org: Any, user: Any) -> list[ConnectionRow]:
    """Every provider of the org with the user's connection (or none) and what the org's
    servers do with it (from the hooks other apps registered)."""
    providers = list(provider_list(org=org))
    mine = {c.provider_id: c for c in Connection.objects.for_org(org).filter(user=user)}
    usages = usages_for(org=org, provider_ids=[p.pk for p in providers])
    return [
        ConnectionRow(provider=p, connection=mine.get(p.pk), usages=usages.get(p.pk, []))
        for p in providers
    ]


def connections_needing_attention(*, org: Any, user: Any) -> QuerySet[Connection]:
    return Connection.objects.for_org(org).filter(
        user=user, status__in=[ConnectionStatus.NEEDS_RECONSENT, ConnectionStatus.ERROR]
    )


def rotation_latest() -> VaultRotation | None:
    return VaultRotation.objects.order_by("-id").first()


def rotation_get(*, id: int) -> VaultRotation | None:
    return VaultRotation.objects.filter(pk=id).first()
