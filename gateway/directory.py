"""What the gateway knows about one organization, in memory: its compiled policy and how to
reach each approved server. Loaded from the database when the organization's `policy_version`
changes (the catalog and policies apps bump it in the transaction that changes approvals or
policies), never per call.

Every replica re-reads the version stamp (mirrored in the cache by
`tenants.services.org_bump_policy_version`) at most every `GATEWAY_POLICY_CHECK_SECONDS`
(default 1 s): that is how long a policy change takes to reach all replicas.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.conf import gateway_settings
from gateway.db import SingleFlight, run_db
from gateway.pool import UpstreamConfig
from policies.engine import CompiledPolicy, VisibleTool
from policies.types import Principal


@dataclass(frozen=True)
class ServerEntry:
    """One approved server as the gateway calls it."""

    slug: str
    label: str
    upstream: UpstreamConfig
    auth_mode: str = "none"  # none | static | oauth
    static_headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    provider: Any = field(default=None, compare=False, repr=False)
    version_id: int | None = None
    server_id: int | None = None


@dataclass
class OrgView:
    org_id: int
    version: int
    compiled: CompiledPolicy
    servers: Mapping[str, ServerEntry]
    # (principal, toolset) -> {exposed name: VisibleTool}, filled lazily
    _visible: dict[tuple[Principal, str | None], dict[str, VisibleTool]] = field(
        default_factory=dict
    )

    def visible(self, principal: Principal, toolset: str | None) -> dict[str, VisibleTool]:
        key = (principal, toolset)
        found = self._visible.get(key)
        if found is None:
            if len(self._visible) > 10_000:
                self._visible.clear()
            tools = self.compiled.visible_tools(principal, toolset)
            found = self._visible[key] = {tool.name: tool for tool in tools}
        return found


def load_org_view(org_id: int) -> OrgView:
    """Build the view from the database (sync; run on a gateway DB thread)."""
    from gateway.catalog_bridge import servers_for_org
    from tenants.models import Organization

    org = Organization.objects.get(pk=org_id)
    return OrgView(
        org_id=org.pk,
        version=org.policy_version,
        compiled=_compiled_policy(org),
        servers=servers_for_org(org),
    )


def _compiled_policy(org: Any) -> CompiledPolicy:
    from policies.selectors import compiled_policy_for

    return compiled_policy_for(org)


def _read_version(org_id: int) -> int:
    from policies.selectors import current_policy_version

    return current_policy_version(org_id)


class Directory:
    def __init__(self) -> None:
        self._views: dict[int, tuple[float, OrgView]] = {}
        # Requests arriving while the version is re-read share that read (one DB thread hop
        # per organization and check interval, not one per request in flight).
        self._refresh = SingleFlight()
        self._generation = 0

    def forget(self, org_id: int | None = None) -> None:
        self._generation += 1
        self._refresh.forget(org_id)
        if org_id is None:
            self._views.clear()
        else:
            self._views.pop(org_id, None)

    async def org_view(self, org_id: int) -> OrgView:
        cached = self._views.get(org_id)
        if (
            cached is not None
            and time.monotonic() - cached[0] < gateway_settings().policy_check_seconds
        ):
            return cached[1]
        return await self._refresh.run(org_id, lambda: self._load(org_id))

    async def _load(self, org_id: int) -> OrgView:
        now = time.monotonic()  # before the read: the entry never outlives the bound
        generation = self._generation
        cached = self._views.get(org_id)
        version = await run_db(_read_version, org_id)
        if cached is not None and cached[1].version == version:
            view = cached[1]
        else:
            view = await run_db(load_org_view, org_id)
        if generation == self._generation:  # not forgotten meanwhile
            self._views[org_id] = (now, view)
        return view


directory = Directory()
