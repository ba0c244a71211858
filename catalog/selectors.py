"""Reads for the catalog. Single-object access functions answer 404 for missing and foreign
rows alike; list functions go through `for_org`."""

import re
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from catalog.models import (
    SERVING_STATUSES,
    FetchJob,
    Server,
    ServerStatus,
    ServerVersion,
    Tool,
    VersionStatus,
)
from tenants.models import Organization

# --- Access functions ------------------------------------------------------------------------


def server_get(*, org: Organization, id: int | str) -> Server:
    return Server.objects.select_related(
        "owner", "team", "approved_version", "oauth_provider"
    ).get_for_org_or_404(org, pk=id)


def fetch_job_get(*, org: Organization, id: int | str, server: Server) -> FetchJob:
    return FetchJob.objects.select_related("version", "server__oauth_provider").get_for_org_or_404(
        org, pk=id, server=server
    )


def version_get(*, org: Organization, id: int | str, server: Server | None = None) -> ServerVersion:
    lookup: dict[str, Any] = {"pk": id}
    if server is not None:
        lookup["server"] = server
    return ServerVersion.objects.select_related(
        "server", "submitted_by", "reviewed_by", "created_by"
    ).get_for_org_or_404(org, **lookup)


def tool_get(*, org: Organization, id: int | str) -> Tool:
    return Tool.objects.select_related("server", "version").get_for_org_or_404(org, pk=id)


# --- Lists -----------------------------------------------------------------------------------


def servers_for_org(
    *, org: Organization, status: str | None = None, q: str | None = None
) -> QuerySet[Server]:
    qs = (
        Server.objects.for_org(org)
        .select_related("owner", "team", "approved_version")
        .annotate(
            quarantined_count=Count(
                "tools",
                filter=Q(tools__quarantined=True, tools__version=models_approved_version()),
                distinct=True,
            ),
            has_open_version=Exists(
                ServerVersion.objects.filter(
                    server=OuterRef("pk"), status__in=[VersionStatus.DRAFT, VersionStatus.SUBMITTED]
                )
            ),
        )
        .order_by("name")
    )
    if status:
        qs = qs.filter(status=status)
    if q:
        qs = qs.filter(Q(name__icontains=q) | Q(slug__icontains=q) | Q(description__icontains=q))
    return qs


def models_approved_version() -> Any:
    from django.db.models import F

    return F("approved_version")


def versions_for_server(*, server: Server) -> QuerySet[ServerVersion]:
    return (
        ServerVersion.objects.for_org(server.organization)
        .filter(server=server)
        .select_related("submitted_by", "reviewed_by", "created_by")
        .annotate(tool_count=Count("tools"))
        .order_by("-number")
    )


def latest_fetch_job(*, server: Server, user: Any, recent_minutes: int = 15) -> FetchJob | None:
    """`user`'s latest fetch of `server` if it is still running or ended recently (the server
    page shows its progress or outcome; an old outcome is history, not news)."""
    job = (
        FetchJob.objects.for_org(server.organization)
        .filter(server=server, requested_by=user)
        .select_related("version")
        .first()
    )
    if job is None or job.is_active:
        return job
    ended = job.finished_at or job.created_at
    return job if ended > timezone.now() - timedelta(minutes=recent_minutes) else None


def open_version(*, server: Server) -> ServerVersion | None:
    return (
        ServerVersion.objects.for_org(server.organization)
        .filter(server=server, status__in=[VersionStatus.DRAFT, VersionStatus.SUBMITTED])
        .first()
    )


def review_queue(*, org: Organization) -> QuerySet[ServerVersion]:
    return (
        ServerVersion.objects.for_org(org)
        .filter(status=VersionStatus.SUBMITTED)
        .select_related("server", "submitted_by")
        .annotate(tool_count=Count("tools"))
        .order_by("submitted_at", "pk")
    )


def drift_attention(*, org: Organization) -> QuerySet[Server]:
    """Serving servers with quarantined tools: the owner and approvers must look at them."""
    return (
        Server.objects.for_org(org)
        .filter(status__in=SERVING_STATUSES)
        .filter(tools__quarantined=True, tools__version_id=models_approved_version())
        .distinct()
        .order_by("name")
    )


def tools_for_version(*, version: ServerVersion) -> QuerySet[Tool]:
    return Tool.objects.for_org(version.organization).filter(version=version).order_by("name")


# --- Diff -----------------------------------------------------------------------------------

DIFF_FIELDS = (
    ("title", "title"),
    ("description", "description"),
    ("input_schema", "input schema"),
    ("output_schema", "output schema"),
    ("annotations", "annotations"),
)


def diff_tools(old: list[Tool] | list[dict], new: list[Tool] | list[dict]) -> dict[str, Any]:
    """Added / removed / changed tools between two listings, field by field."""

    def as_map(items: list) -> dict[str, dict[str, Any]]:
        out = {}
        for item in items:
            if isinstance(item, Tool):
                item = {
                    "name": item.name,
                    "title": item.title,
                    "description": item.description,
                    "input_schema": item.input_schema,
                    "output_schema": item.output_schema,
                    "annotations": item.annotations,
                    "definition_hash": item.definition_hash,
                }
            out[item["name"]] = item
        return out

    before, after = as_map(old), as_map(new)
    added = [after[n] for n in sorted(set(after) - set(before))]
    removed = [before[n] for n in sorted(set(before) - set(after))]
    changed = []
    for name in sorted(set(before) & set(after)):
        if before[name]["definition_hash"] == after[name]["definition_hash"]:
            continue
        fields = [
            {"field": key, "label": label, "before": before[name][key], "after": after[name][key]}
            for key, label in DIFF_FIELDS
            if before[name][key] != after[name][key]
        ]
        changed.append({"name": name, "fields": fields})
    unchanged = len(set(before) & set(after)) - len(changed)
    return {"added": added, "removed": removed, "changed": changed, "unchanged": unchanged}


def version_diff(*, version: ServerVersion) -> dict[str, Any] | None:
    """The diff of `version` against its server's approved version (None if there is none or
    it is this version)."""
    approved_id = version.server.approved_version_id
    if approved_id is None or approved_id == version.pk:
        return None
    old = list(Tool.objects.filter(version_id=approved_id))
    new = list(Tool.objects.filter(version=version))
    diff = diff_tools(old, new)
    diff["against"] = ServerVersion.objects.get(pk=approved_id)
    return diff


# --- For the policies engine and the gateway (plain data) ------------------------------------


def approved_tools_for_org(*, org: Organization | int) -> list[dict[str, Any]]:
    """Every tool of every serving server's approved version, as plain dicts the policy engine
    compiles from: server slug, tool name, title, description, input/output schema, annotations,
    definition_hash, version id, quarantined. A tool is `quarantined` when its live definition
    drifted, or when the server's connection settings changed since approval (the reviewed
    config no longer describes what would be called); the gateway lists and calls neither."""
    org_id = org if isinstance(org, int) else org.pk
    servers = {
        s.pk: s
        for s in Server.objects.filter(
            organization_id=org_id,
            status__in=SERVING_STATUSES,
            approved_version__isnull=False,
        ).select_related("approved_version")
    }
    changed_config = {pk for pk, s in servers.items() if s.connection_changed_since_approval}
    tools = (
        Tool.objects.filter(
            organization_id=org_id, version_id__in=[s.approved_version_id for s in servers.values()]
        )
        .order_by("server_id", "name")
        .values(
            "server_id",
            "version_id",
            "name",
            "title",
            "description",
            "input_schema",
            "output_schema",
            "annotations",
            "definition_hash",
            "quarantined",
        )
    )
    out = []
    for row in tools:
        server = servers[row["server_id"]]
        out.append(
            {
                "server_id": server.pk,
                "server_slug": server.slug,
                "server_status": server.status,
                "data_classification": server.data_classification,
                "tool_name": row["name"],
                "qualified_name": f"{server.slug}.{row['name']}",
                "title": row["title"],
                "description": row["description"],
                "input_schema": row["input_schema"],
                "output_schema": row["output_schema"],
                "annotations": row["annotations"],
                "definition_hash": row["definition_hash"],
                "version_id": row["version_id"],
                "quarantined": row["quarantined"] or server.pk in changed_config,
            }
        )
    return out


def provider_usage(*, org: Organization, provider_ids: list[int]) -> dict[int, list[Any]]:
    """For the credentials pages (consent, connections): which serving servers send a user's
    grant at each provider upstream, and their approved tools. Registered at start-up with
    `credentials.usage.register_usage_describer` (credentials sits below the catalog)."""
    from django.urls import reverse

    from credentials.usage import ProviderUsage

    servers = list(
        Server.objects.for_org(org)
        .filter(oauth_provider_id__in=provider_ids, auth_mode="oauth")
        .filter(status__in=SERVING_STATUSES, approved_version__isnull=False)
        .order_by("name")
    )
    tools: dict[int, list[str]] = {}
    for version_id, name in (
        Tool.objects.filter(version_id__in=[s.approved_version_id for s in servers])
        .order_by("name")
        .values_list("version_id", "name")
    ):
        tools.setdefault(version_id, []).append(name)
    out: dict[int, list[Any]] = {}
    for server in servers:
        out.setdefault(server.oauth_provider_id, []).append(
            ProviderUsage(
                server=server.name,
                detail=(server.purpose or server.description)[:200],
                tools=tools.get(server.approved_version_id, []),
                url=reverse("catalog:server_detail", args=[org.slug, server.pk]),
            )
        )
    return out


# --- Search ---------------------------------------------------------------------------------

_WORD = re.compile(r"[\w-]+", re.UNICODE)


def tool_search(*, org: Organization, query: str, limit: int = 20) -> list[Tool]:
    """Approved, non-quarantined tools of serving servers ranked by relevance to `query` over
    name, title and description. Postgres: full-text search (weighted: name > title >
    description). SQLite: every word must appear; ranked by where it appears."""
    query = (query or "").strip()[:200]
    words = _WORD.findall(query.lower())[:10]
    if not words:
        return []
    base = (
        Tool.objects.for_org(org)
        .filter(
            quarantined=False,
            server__status__in=SERVING_STATUSES,
            version_id=models_approved_version_of_server(),
        )
        .select_related("server")
    )
    if settings.DB_VENDOR == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector

        vector = (
            SearchVector("name", weight="A", config="simple")
            + SearchVector("title", weight="B", config="english")
            + SearchVector("description", weight="C", config="english")
        )
        # Prefix matching per word, all words required ("tick" finds "tickets").
        ts_query = " & ".join(
            f"{re.sub(r'[^\w]', '', w)}:*" for w in words if re.sub(r"[^\w]", "", w)
        )
        if not ts_query:
            return []
        search = SearchQuery(ts_query, search_type="raw", config="simple") | SearchQuery(
            query, config="english"
        )
        return list(
            base.annotate(rank=SearchRank(vector, search))
            .filter(rank__gt=0)
            .order_by("-rank", "name")[:limit]
        )
    qs = base
    for word in words:
        qs = qs.filter(
            Q(name__icontains=word) | Q(title__icontains=word) | Q(description__icontains=word)
        )
    candidates = list(qs[:500])

    def score(tool: Tool) -> float:
        total = 0.0
        name, title, desc = tool.name.lower(), tool.title.lower(), tool.description.lower()
        for word in words:
            total += 3 * (word in name) + 2 * (word in title) + min(desc.count(word), 3) * 0.5
        return total

    candidates.sort(key=lambda t: (-score(t), t.name))
    return candidates[:limit]


def models_approved_version_of_server() -> Any:
    from django.db.models import F

    return F("server__approved_version")


__all__ = [
    "ServerStatus",
    "approved_tools_for_org",
    "diff_tools",
    "drift_attention",
    "fetch_job_get",
    "latest_fetch_job",
    "open_version",
    "provider_usage",
    "review_queue",
    "server_get",
    "servers_for_org",
    "tool_get",
    "tool_search",
    "tools_for_version",
    "version_diff",
    "version_get",
    "versions_for_server",
]
