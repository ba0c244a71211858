"""What the organization's servers do with a provider's grant, told by higher apps.

credentials sits below catalog, so it cannot ask the catalog which servers need a provider.
The catalog registers a describer at start-up instead:

    from credentials.usage import ProviderUsage, register_usage_describer

    def describe(*, org, provider_ids):
        return {provider_id: [ProviderUsage(server="Tickets", detail="read and update tickets",
                                            tools=["list_tickets", "update_ticket"])], ...}

    register_usage_describer(describe)   # in CatalogConfig.ready()

The Connections page shows these beside each provider (and the provider's scopes always).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ProviderUsage:
    server: str
    detail: str = ""
    tools: list[str] = field(default_factory=list)
    url: str = ""


UsageDescriber = Callable[..., dict[int, list[ProviderUsage]]]
_describers: list[UsageDescriber] = []


def register_usage_describer(describer: UsageDescriber) -> None:
    """`describer(*, org, provider_ids) -> {provider_id: [ProviderUsage, ...]}`."""
    if describer not in _describers:
        _describers.append(describer)


def usages_for(*, org: Any, provider_ids: list[int]) -> dict[int, list[ProviderUsage]]:
    merged: dict[int, list[ProviderUsage]] = {}
    for describer in list(_describers):
        for provider_id, usages in (describer(org=org, provider_ids=provider_ids) or {}).items():
            merged.setdefault(provider_id, []).extend(usages)
    return merged
