"""Writes for the catalog. Every service checks the actor's permission, changes rows in one
transaction with its audit event, and schedules side effects on commit. Network I/O (fetching
tools from an upstream) happens *before* the transaction opens, so a slow upstream never holds
a database lock and a failed fetch writes nothing."""

import logging
import re
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

import audit
from catalog import secrets as server_secrets
from catalog.definitions import ToolDefinition, tools_digest
from catalog.errors import CatalogError, ReviewError, UpstreamError
from catalog.models import (
    ACTIVE_FETCH_STATES,
    OPEN_VERSION_STATUSES,
    SERVING_STATUSES,
    AuthMode,
    Classification,
    FetchJob,
    FetchState,
    Server,
    ServerStatus,
    ServerVersion,
    Tool,
    Transport,
    VersionOrigin,
    VersionStatus,
)
from catalog.scanners import ScanContext, scan
from catalog.upstream import (
    Progress,
    ToolListing,
    check_url_shape,
    list_tools_sync,
    server_connection_config,
)
from credentials import services as credential_services
from credentials.errors import ConsentRequired, CredentialError
from credentials.models import OAuthProvider
from tenants.errors import DomainError, PermissionDeniedError
from tenants.models import Membership, Organization, Team, User
from tenants.permissions import Perm, role_has
from tenants.services import org_bump_policy_version, require_perm

logger = logging.getLogger(__name__)

HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,100}$")
HOST_RE = re.compile(
    r"^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$|^\[?[0-9a-f:.]+\]?$"
)
FORBIDDEN_HEADERS = {
    "host",
    "content-length",
    "mcp-session-id",
    "mcp-protocol-version",
    "transfer-encoding",
}

CONNECTION_FIELDS = (
    "transport",
    "url",
    "command",
    "args",
    "env",
    "working_dir",
    "auth_mode",
    "oauth_provider",
    "static_headers",
    "egress_hosts",
)
DESCRIPTIVE_FIELDS = (
    "name",
    "description",
    "purpose",
    "owner",
    "team",
    "tags",
    "data_classification",
    "sla",
    "sla_target",
    "docs_url",
    "dependencies",
)


# --- Helpers --------------------------------------------------------------------------------


def _can_edit(org: Organization, actor: User, server: Server) -> None:
    """The server's owner (with submit rights) or anyone who may approve servers."""
    membership = require_perm(org=org, actor=actor, perm=Perm.SUBMIT_SERVER)
    if server.owner_id == actor.pk or role_has(membership.role, Perm.APPROVE_SERVER):
        return
    raise PermissionDeniedError("Only the server's owner or an approver can change this server.")


def _clean_list(
    values: Any,
    *,
    field: str,
    item_re: re.Pattern[str] | None = None,
    lower: bool = False,
    max_items: int = 50,
    max_len: int = 255,
) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [v for v in re.split(r"[,\n]", values)]
    if not isinstance(values, list | tuple):
        raise CatalogError("Give a list of strings.", field=field)
    out: list[str] = []
    for value in values:
        if not isinstance(value, str):
            raise CatalogError("Every item must be a string.", field=field)
        value = value.strip()
        if lower:
            value = value.lower()
        if not value:
            continue
        if len(value) > max_len or (item_re is not None and not item_re.match(value)):
            raise CatalogError(f"{value[:60]!r} is not valid here.", field=field)
        if value not in out:
            out.append(value)
    if len(out) > max_items:
        raise CatalogError(f"At most {max_items} items.", field=field)
    return out


def _clean_args(args: Any) -> list[str]:
    """Arguments keep their order, duplicates and spaces (unlike tag-like lists)."""
    if args is None:
        return []
    if not isinstance(args, list | tuple) or not all(isinstance(a, str) for a in args):
        raise CatalogError("Give the arguments as a list of strings.", field="args")
    if len(args) > 100 or any(len(a) > 1000 or "\x00" in a for a in args):
        raise CatalogError("At most 100 arguments of 1000 characters each.", field="args")
    return list(args)


def _clean_secret_map(
    values: Any, *, field: str, name_re: re.Pattern[str], kind: str
) -> dict[str, str]:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise CatalogError(f"Give the {kind} as name/value pairs.", field=field)
    out: dict[str, str] = {}
    for name, value in values.items():
        if not isinstance(name, str) or not name_re.match(name):
            raise CatalogError(f"{str(name)[:60]!r} is not a valid {kind} name.", field=field)
        if field == "static_headers" and name.lower() in FORBIDDEN_HEADERS:
            raise CatalogError(f"The header {name} is set by the gateway itself.", field=field)
        if not isinstance(value, str) or len(value) > 8000 or "\n" in value or "\r" in value:
            raise CatalogError(f"The value of {name} must be one line of text.", field=field)
        out[name] = value
    if len(out) > 50:
        raise CatalogError(f"At most 50 {kind}s.", field=field)
    return out


def _validate_connection(server: Server) -> None:
    if server.transport == Transport.HTTP:
        if not server.url:
            raise CatalogError("A Streamable HTTP server needs its URL.", field="url")
        try:
            _scheme, host, _port = check_url_shape(server.url)
        except UpstreamError as exc:
            raise CatalogError(exc.message, field="url") from None
        if not server.egress_hosts:
            server.egress_hosts = [host.lower()]
        from catalog.upstream import host_allowed

        if not host_allowed(host, server.egress_hosts):
            raise CatalogError(
                f"The URL's host {host} must be one of the declared egress hosts.", field="url"
            )
    elif server.transport == Transport.STDIO:
        if not server.command or "\x00" in server.command:
            raise CatalogError("A stdio server needs the command to run.", field="command")
        if any("\x00" in a or len(a) > 1000 for a in server.args):
            raise CatalogError(
                "Arguments must be text, 1000 characters at most each.", field="args"
            )
        if len(server.args) > 100:
            raise CatalogError("At most 100 arguments.", field="args")
        if server.auth_mode == AuthMode.OAUTH:
            raise CatalogError(
                "Per-user OAuth applies to Streamable HTTP servers only.", field="auth_mode"
            )
    else:
        raise CatalogError("Choose Streamable HTTP or stdio.", field="transport")
    if server.auth_mode not in AuthMode.values:
        raise CatalogError("Choose none, static or oauth.", field="auth_mode")
    if server.auth_mode == AuthMode.OAUTH:
        if server.oauth_provider_id is None:
            raise CatalogError(
                "Per-user OAuth needs the OAuth provider whose tokens this server accepts: "
                "choose one (an admin registers providers under Connections).",
                field="oauth_provider",
            )
        if server.oauth_provider.organization_id != server.organization_id:
            raise CatalogError(
                "That OAuth provider is not in this organization.", field="oauth_provider"
            )
    else:
        # Only per-user OAuth servers use a provider; a stale choice must not linger unseen.
        server.oauth_provider = None
    if server.auth_mode == AuthMode.STATIC and not server.static_headers_blob:
        raise CatalogError(
            "Static secret auth needs at least one header (e.g. Authorization).",
            field="static_headers",
        )


def _check_refs(
    org: Organization, owner: User | None, team: Team | None, deps: list[Server]
) -> None:
    if owner is not None and not Membership.objects.for_org(org).filter(user=owner).exists():
        raise CatalogError("The owner must be a member of this organization.", field="owner")
    if team is not None and team.organization_id != org.pk:
        raise CatalogError("That team is not in this organization.", field="team")
    for dep in deps:
        if dep.organization_id != org.pk:
            raise CatalogError(
                "Dependencies must be servers of this organization.", field="dependencies"
            )


def _full_clean(server: Server) -> None:
    try:
        server.full_clean(
            exclude=[
                "organization",
                "approved_version",
                "owner",
                "team",
                "created_by",
                "oauth_provider",
            ],
            validate_unique=False,
            validate_constraints=False,
        )
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise CatalogError(
            f"{field.replace('_', ' ').capitalize()}: {messages[0]}", field=field
        ) from None


# --- Servers --------------------------------------------------------------------------------


@transaction.atomic
def server_create(
    *,
    org: Organization,
    actor: User,
    name: str,
    slug: str,
    transport: str = Transport.HTTP,
    url: str = "",
    command: str = "",
    args: list[str] | None = None,
    env: dict[str, str] | None = None,
    working_dir: str = "",
    auth_mode: str = AuthMode.NONE,
    oauth_provider: OAuthProvider | None = None,
    static_headers: dict[str, str] | None = None,
    egress_hosts: list[str] | None = None,
    description: str = "",
    purpose: str = "",
    owner: User | None = None,
    team: Team | None = None,
    tags: list[str] | None = None,
    data_classification: str = Classification.INTERNAL,
    sla: str = "",
    sla_target: str = "",
    docs_url: str = "",
    dependencies: list[Server] | None = None,
) -> Server:
    """Register a server (status draft). The actor becomes its owner unless one is given."""
    require_perm(org=org, actor=actor, perm=Perm.SUBMIT_SERVER)
    owner = owner or actor
    deps = list(dependencies or [])
    _check_refs(org, owner, team, deps)
    if Server.objects.for_org(org).filter(slug=slug).exists():
        raise CatalogError(f"A server with the slug '{slug}' exists already.", field="slug")
    server = Server(
        organization=org,
        name=(name or "").strip(),
        slug=(slug or "").strip(),
        transport=transport,
        url=(url or "").strip(),
        command=(command or "").strip(),
        args=_clean_args(args),
        working_dir=(working_dir or "").strip(),
        auth_mode=auth_mode,
        oauth_provider=oauth_provider,
        egress_hosts=_clean_list(egress_hosts, field="egress_hosts", item_re=HOST_RE, lower=True),
        description=description or "",
        purpose=purpose or "",
        owner=owner,
        team=team,
        tags=_clean_list(tags, field="tags", lower=True, max_items=20, max_len=40),
        data_classification=data_classification,
        sla=sla or "",
        sla_target=sla_target or "",
        docs_url=(docs_url or "").strip(),
        created_by=actor,
    )
    _full_clean(server)
    server_secrets.set_static_headers(
        server,
        _clean_secret_map(
            static_headers, field="static_headers", name_re=HEADER_NAME_RE, kind="header"
        ),
    )
    server_secrets.set_env(
        server,
        _clean_secret_map(env, field="env", name_re=ENV_NAME_RE, kind="environment variable"),
    )
    _validate_connection(server)
    try:
        with transaction.atomic():
            server.save()
    except IntegrityError:
        raise CatalogError(
            f"A server with the slug '{slug}' exists already.", field="slug"
        ) from None
    if deps:
        server.dependencies.set(deps)
    audit.record(
        org=org,
        action="server.created",
        actor=actor,
        target=server,
        server=server.slug,
        details={"connection": server.connection_snapshot(), "owner": owner.email},
    )
    return server


@transaction.atomic
def server_update(*, org: Organization, actor: User, server: Server, **changes: Any) -> Server:
    """Change a server's description or connection. Connection changes to an approved server
    withhold its tools from agents until a version fetched with the new settings is approved:
    the reviewed config must be the one agents reach."""
    _can_edit(org, actor, server)
    unknown = set(changes) - set(CONNECTION_FIELDS) - set(DESCRIPTIVE_FIELDS)
    if unknown:
        raise CatalogError(f"Unknown fields: {', '.join(sorted(unknown))}.")
    server = Server.objects.select_for_update().get(pk=server.pk, organization=org)
    if server.status == ServerStatus.RETIRED:
        raise CatalogError("This server is retired and cannot be changed.")
    before = server.connection_snapshot()
    changed: list[str] = []
    if "dependencies" in changes:
        deps = list(changes.pop("dependencies") or [])
        if any(d.pk == server.pk for d in deps):
            raise CatalogError("A server cannot depend on itself.", field="dependencies")
        _check_refs(org, None, None, deps)
        server.dependencies.set(deps)
        changed.append("dependencies")
    _check_refs(org, changes.get("owner"), changes.get("team"), [])
    if "owner" in changes and changes["owner"] is None:
        raise CatalogError("A server needs an owner.", field="owner")
    for key in ("static_headers", "env"):
        if key in changes:
            values = changes.pop(key)
            if values is None:  # None: keep the stored secrets unchanged
                continue
            if key == "static_headers":
                server_secrets.set_static_headers(
                    server,
                    _clean_secret_map(values, field=key, name_re=HEADER_NAME_RE, kind="header"),
                )
            else:
                server_secrets.set_env(
                    server,
                    _clean_secret_map(
                        values, field=key, name_re=ENV_NAME_RE, kind="environment variable"
                    ),
                )
            changed.append(key)
    for key, value in changes.items():
        if key in ("tags",):
            value = _clean_list(value, field=key, lower=True, max_items=20, max_len=40)
        elif key == "egress_hosts":
            value = _clean_list(value, field=key, item_re=HOST_RE, lower=True)
        elif key == "args":
            value = _clean_args(value)
        elif isinstance(value, str):
            value = value.strip() if key not in ("description", "purpose") else value
        if getattr(server, key) != value:
            setattr(server, key, value)
            changed.append(key)
    if not changed:
        return server
    _full_clean(server)
    _validate_connection(server)
    server.updated_at = timezone.now()
    server.save()
    after = server.connection_snapshot()
    connection_changed = before != after or any(k in changed for k in ("static_headers", "env"))
    if before != after and server.approved_version_id and server.status in SERVING_STATUSES:
        org_bump_policy_version(org=org)
    audit.record(
        org=org,
        action="server.updated",
        actor=actor,
        target=server,
        server=server.slug,
        details={
            "fields": sorted(changed),
            "connection_before": before if before != after else None,
            "connection_after": after if before != after else None,
            "secrets_changed": sorted(k for k in changed if k in ("static_headers", "env")),
            "connection_changed": connection_changed,
        },
    )
    return server


# --- Fetching tools -------------------------------------------------------------------------


def _scan_context(server: Server) -> ScanContext:
    other: dict[str, list[str]] = {}
    rows = (
        Tool.objects.for_org(server.organization)
        .filter(server__status__in=SERVING_STATUSES)
        .exclude(server=server)
        .filter(version_id=models_f("server__approved_version"))
        .values_list("name", "server__slug")
    )
    for name, slug in rows:
        other.setdefault(name, []).append(slug)
    return ScanContext(
        server_slug=server.slug, egress_hosts=tuple(server.egress_hosts or ()), other_tools=other
    )


def models_f(name: str) -> Any:
    from django.db.models import F

    return F(name)


def upstream_headers(server: Server, user: User | None) -> dict[str, str]:
    """Headers carrying `user`'s own credential for a per-user OAuth server ({} otherwise).

    The token comes from the user's Connection in the vault (refreshed if needed); an agent's
    key or inbound token is never used for this. Raises UpstreamError with code
    `consent_required` (and `.consent_url`) when the user has not connected the provider, or
    `credential_unavailable` when the vault or provider cannot answer: the fetch fails closed."""
    if server.auth_mode != AuthMode.OAUTH:
        return {}
    provider = server.oauth_provider
    if provider is None:
        raise UpstreamError(
            "This server uses per-user OAuth but names no OAuth provider: edit it and choose one.",
            code="auth_required",
        )
    if user is None:
        raise UpstreamError(
            f"Nobody's {provider.name} account is available to reach this server.",
            code="consent_required",
        )
    try:
        token = credential_services.access_token_for(user=user, provider=provider)
    except ConsentRequired as exc:
        raise UpstreamError(
            f"Connect {provider.name} first ({exc.consent_url}): this server is reached with "
            f"your own {provider.name} account.",
            code="consent_required",
            consent_url=exc.consent_url,
        ) from None
    except CredentialError as exc:
        raise UpstreamError(exc.message, code="credential_unavailable") from None
    return {"Authorization": f"Bearer {token}"}


def fetch_listing(
    server: Server, *, acting_user: User | None = None, progress: Progress | None = None
) -> ToolListing:
    """Fetch the server's tools from the upstream (network; no transaction held), with
    `acting_user`'s credential when the server uses per-user OAuth."""
    headers = upstream_headers(server, acting_user)
    return list_tools_sync(server_connection_config(server), headers=headers, progress=progress)


def _write_tools(version: ServerVersion, tools: list[ToolDefinition]) -> str:
    Tool.objects.filter(version=version).delete()
    rows = [
        Tool(
            organization_id=version.organization_id,
            version=version,
            server_id=version.server_id,
            name=t.name,
            title=t.title,
            description=t.description,
            input_schema=t.input_schema,
            output_schema=t.output_schema,
            annotations=t.annotations,
            definition_hash=t.definition_hash,
        )
        for t in tools
    ]
    Tool.objects.bulk_create(rows, batch_size=200)
    return tools_digest((t.name, t.definition_hash) for t in tools)


def _next_number(server: Server) -> int:
    return (ServerVersion.objects.filter(server=server).aggregate(n=Max("number"))["n"] or 0) + 1


def server_fetch_tools(
    *, org: Organization, actor: User, server: Server, listing: ToolListing | None = None
) -> ServerVersion:
    """Fetch the upstream's tools into the server's draft version (created if there is none),
    with scanner findings. Raises UpstreamError (nothing written) when the upstream is down,
    slow, not MCP or hands over definitions we refuse."""
    _check_fetchable(org, actor, server)
    current = Server.objects.select_related("oauth_provider").get(pk=server.pk)
    listing = listing or fetch_listing(current, acting_user=actor)
    return _store_fetch(org=org, actor=actor, server_id=server.pk, listing=listing)


def _check_fetchable(org: Organization, actor: User, server: Server) -> None:
    _can_edit(org, actor, server)
    current = Server.objects.get(pk=server.pk)
    if current.status == ServerStatus.RETIRED:
        raise CatalogError("This server is retired: its tools cannot be fetched.")
    pending = ServerVersion.objects.filter(server=current, status=VersionStatus.SUBMITTED).first()
    if pending is not None:
        raise ReviewError(
            f"Version {pending.number} is under review: withdraw it or wait for the decision "
            "before fetching again."
        )


def fetch_job_start(*, org: Organization, actor: User, server: Server) -> FetchJob:
    """Queue a background "Fetch tools" (the worker runs `fetch_tools_task` after commit). A
    fetch of this server already queued or running for the same user is returned instead of
    a second one."""
    _check_fetchable(org, actor, server)
    with transaction.atomic():
        Server.objects.select_for_update().filter(pk=server.pk).first()  # serialize starts
        running = (
            FetchJob.objects.for_org(org)
            .filter(server=server, requested_by=actor, state__in=ACTIVE_FETCH_STATES)
            .first()
        )
        if running is not None and not _stale(running):
            return running
        job = FetchJob.objects.create(organization=org, server=server, requested_by=actor)

        def _enqueue() -> None:
            from catalog.tasks import fetch_tools_task

            fetch_tools_task.delay(job.pk)

        transaction.on_commit(_enqueue, robust=True)
    return job


def _fetch_lease() -> timedelta:
    # A job running longer than this was lost with its worker; it may be claimed again.
    return timedelta(seconds=settings.CATALOG_FETCH_TIMEOUT * 2 + 60)


def _stale(job: FetchJob) -> bool:
    started = job.started_at or job.created_at
    return job.state != FetchState.QUEUED and started < timezone.now() - _fetch_lease()


def fetch_job_run(*, job_id: int) -> FetchJob:
    """Run one fetch job: claim it (a conditional update, so a redelivered task or a second
    worker does nothing), list the upstream's tools with the requesting user's credential,
    recording progress on the job, then store them in the draft version. Failures end the job
    with a code and a message; nothing else is written."""
    now = timezone.now()
    claimable = FetchJob.objects.filter(pk=job_id).filter(
        Q(state=FetchState.QUEUED)
        | Q(state__in=ACTIVE_FETCH_STATES, started_at__lt=now - _fetch_lease())
    )
    if not claimable.update(state=FetchState.CONNECTING, started_at=now, tools_so_far=0):
        return FetchJob.objects.get(pk=job_id)
    job = FetchJob.objects.select_related("server", "organization", "requested_by").get(pk=job_id)
    org, actor = job.organization, job.requested_by

    def progress(stage: str, count: int) -> None:
        FetchJob.objects.filter(pk=job_id, state__in=ACTIVE_FETCH_STATES).update(
            state=stage, tools_so_far=count
        )

    try:
        _check_fetchable(org, actor, job.server)
        server = Server.objects.select_related("oauth_provider").get(pk=job.server_id)
        listing = fetch_listing(server, acting_user=actor, progress=progress)
        version = _store_fetch(org=org, actor=actor, server_id=server.pk, listing=listing)
    except DomainError as exc:
        FetchJob.objects.filter(pk=job_id).update(
            state=FetchState.FAILED,
            error_code=exc.code[:40],
            error_message=exc.message[:2000],
            consent_url=getattr(exc, "consent_url", "")[:500],
            finished_at=timezone.now(),
        )
    else:
        FetchJob.objects.filter(pk=job_id).update(
            state=FetchState.DONE,
            version=version,
            tools_so_far=len(listing.tools),
            finished_at=timezone.now(),
        )
    return FetchJob.objects.get(pk=job_id)


@transaction.atomic
def _store_fetch(
    *,
    org: Organization,
    actor: User | None,
    server_id: int,
    listing: ToolListing,
    origin: str = VersionOrigin.MANUAL,
) -> ServerVersion:
    server = Server.objects.select_for_update().get(pk=server_id, organization=org)
    version = (
        ServerVersion.objects.select_for_update()
        .filter(server=server, status__in=OPEN_VERSION_STATUSES)
        .first()
    )
    if version is not None and version.status == VersionStatus.SUBMITTED:
        raise ReviewError(
            f"Version {version.number} is under review: wait for the decision before fetching again."
        )
    if version is None:
        version = ServerVersion(
            organization=org,
            server=server,
            number=_next_number(server),
            created_by=actor,
            origin=origin,
        )
    version.origin = origin
    version.config_snapshot = server.connection_snapshot()
    version.server_info = listing.server_info
    version.label = str(listing.server_info.get("version", ""))[:100]
    version.fetched_at = timezone.now()
    version.findings = scan(listing.tools, _scan_context(server))
    version.save()
    version.tools_digest = _write_tools(version, listing.tools)
    version.save(update_fields=["tools_digest"])
    audit.record(
        org=org,
        action="server.tools_fetched",
        actor=actor,
        target=version,
        server=server.slug,
        details={
            "version": version.number,
            "origin": origin,
            "upstream_auth": server.auth_mode,
            "oauth_provider": server.oauth_provider.slug if server.oauth_provider_id else None,
            "tools": len(listing.tools),
            "digest": version.tools_digest,
            "findings": {
                sev: sum(1 for f in version.findings if f["severity"] == sev)
                for sev in ("high", "medium", "low")
            },
        },
    )
    return version


# --- Review ---------------------------------------------------------------------------------


@transaction.atomic
def version_withdraw(
    *, org: Organization, actor: User, version: ServerVersion, note: str = ""
) -> ServerVersion:
    """Take a submitted version back out of the review queue (back to draft), e.g. to fetch
    again or fix the server first. Only the server's owner or the version's submitter."""
    require_perm(org=org, actor=actor, perm=Perm.SUBMIT_SERVER)
    version = ServerVersion.objects.select_for_update().get(pk=version.pk, organization=org)
    server = Server.objects.select_for_update().get(pk=version.server_id)
    if actor.pk not in (server.owner_id, version.submitted_by_id):
        raise PermissionDeniedError(
            "Only the server's owner or the person who submitted this version can withdraw it."
        )
    if version.status != VersionStatus.SUBMITTED:
        raise ReviewError(
            f"Only a submitted version can be withdrawn; version {version.number} is "
            f"{version.get_status_display().lower()}.",
            code="invalid_state",
        )
    submitted_by = version.submitted_by
    version.status = VersionStatus.DRAFT
    version.submitted_by = None
    version.submitted_at = None
    version.save(update_fields=["status", "submitted_by", "submitted_at"])
    if server.approved_version_id is None and server.status == ServerStatus.SUBMITTED:
        server.status = ServerStatus.DRAFT
        server.save(update_fields=["status"])
    audit.record(
        org=org,
        action="server.version_withdrawn",
        actor=actor,
        target=version,
        server=server.slug,
        details={
            "version": version.number,
            "submitted_by": submitted_by.email if submitted_by else None,
            "note": (note or "").strip()[:500],
        },
    )
    return version


@transaction.atomic
def version_submit(
    *, org: Organization, actor: User, version: ServerVersion, note: str = ""
) -> ServerVersion:
    """Send a fetched draft to the approvers' queue."""
    _can_edit(org, actor, version.server)
    version = (
        ServerVersion.objects.select_for_update()
        .select_related("server")
        .get(pk=version.pk, organization=org)
    )
    if version.status != VersionStatus.DRAFT:
        raise ReviewError(
            f"Only a draft can be submitted; this version is {version.get_status_display().lower()}."
        )
    if version.fetched_at is None:
        raise ReviewError("Fetch the server's tools before submitting.")
    server = version.server
    if server.status == ServerStatus.RETIRED:
        raise ReviewError("This server is retired.")
    if server.connection_snapshot() != version.config_snapshot:
        raise ReviewError(
            "The server's connection settings changed after these tools were fetched: fetch again."
        )
    version.status = VersionStatus.SUBMITTED
    version.submitted_by = actor
    version.submitted_at = timezone.now()
    if note:
        version.decision_note = ""
    version.save(update_fields=["status", "submitted_by", "submitted_at", "decision_note"])
    if server.approved_version_id is None and server.status in (
        ServerStatus.DRAFT,
        ServerStatus.REJECTED,
    ):
        server.status = ServerStatus.SUBMITTED
        server.save(update_fields=["status"])
    audit.record(
        org=org,
        action="server.version_submitted",
        actor=actor,
        target=version,
        server=server.slug,
        details={
            "version": version.number,
            "note": note[:500],
            "high_findings": len(version.high_findings),
        },
    )
    return version


@transaction.atomic
def version_approve(
    *,
    org: Organization,
    actor: User,
    version: ServerVersion,
    note: str = "",
    acknowledge_findings: bool = False,
) -> ServerVersion:
    """Approve a submitted version: pin its tool hashes and make it what agents get.
    The submitter cannot approve their own version; high-severity findings must be
    acknowledged. Safe against a concurrent second approval (row lock + status check)."""
    require_perm(org=org, actor=actor, perm=Perm.APPROVE_SERVER)
    version = ServerVersion.objects.select_for_update().get(pk=version.pk, organization=org)
    server = Server.objects.select_for_update().get(pk=version.server_id)
    if version.status != VersionStatus.SUBMITTED:
        raise ReviewError(
            f"Only a submitted version can be approved; version {version.number} is "
            f"{version.get_status_display().lower()}.",
            code="invalid_state",
        )
    if version.submitted_by_id == actor.pk:
        raise ReviewError(
            "You submitted this version: another approver must review it.", code="self_review"
        )
    if server.status == ServerStatus.RETIRED:
        raise ReviewError("This server is retired.")
    if version.high_findings and not acknowledge_findings:
        raise ReviewError(
            f"This version has {len(version.high_findings)} high-severity finding(s): read them "
            "and acknowledge them to approve.",
            field="acknowledge_findings",
            code="findings_not_acknowledged",
        )
    if server.connection_snapshot() != version.config_snapshot:
        raise ReviewError(
            "The server's connection settings changed after this version was fetched: reject it "
            "and fetch again.",
            code="stale",
        )
    now = timezone.now()
    previous_id = server.approved_version_id
    if previous_id:
        ServerVersion.objects.filter(pk=previous_id).update(status=VersionStatus.SUPERSEDED)
    version.status = VersionStatus.APPROVED
    version.reviewed_by = actor
    version.reviewed_at = now
    version.decision_note = (note or "").strip()[:4000]
    version.findings_acknowledged = bool(version.high_findings and acknowledge_findings)
    version.save(
        update_fields=[
            "status",
            "reviewed_by",
            "reviewed_at",
            "decision_note",
            "findings_acknowledged",
        ]
    )
    Tool.objects.filter(version=version).update(
        quarantined=False, quarantined_at=None, quarantine_reason=""
    )
    server.approved_version = version
    if server.status != ServerStatus.DEPRECATED:
        server.status = ServerStatus.APPROVED
    server.last_sync_error = ""
    server.last_synced_at = now
    server.save(update_fields=["approved_version", "status", "last_sync_error", "last_synced_at"])
    org_bump_policy_version(org=org)
    audit.record(
        org=org,
        action="server.version_approved",
        actor=actor,
        target=version,
        server=server.slug,
        details={
            "version": version.number,
            "previous_version_id": previous_id,
            "digest": version.tools_digest,
            "note": version.decision_note[:500],
            "acknowledged_findings": [f"{f['scanner']}:{f['tool']}" for f in version.high_findings]
            if acknowledge_findings
            else [],
        },
    )
    return version


@transaction.atomic
def version_reject(
    *, org: Organization, actor: User, version: ServerVersion, note: str
) -> ServerVersion:
    """Reject a submitted version; the note (required) tells the owner why."""
    require_perm(org=org, actor=actor, perm=Perm.APPROVE_SERVER)
    note = (note or "").strip()
    if not note:
        raise ReviewError(
            "Say why you reject it: the owner reads this note.", field="note", code="note_required"
        )
    version = ServerVersion.objects.select_for_update().get(pk=version.pk, organization=org)
    server = Server.objects.select_for_update().get(pk=version.server_id)
    if version.status != VersionStatus.SUBMITTED:
        raise ReviewError(
            f"Only a submitted version can be rejected; version {version.number} is "
            f"{version.get_status_display().lower()}.",
            code="invalid_state",
        )
    version.status = VersionStatus.REJECTED
    version.reviewed_by = actor
    version.reviewed_at = timezone.now()
    version.decision_note = note[:4000]
    version.save(update_fields=["status", "reviewed_by", "reviewed_at", "decision_note"])
    if server.approved_version_id is None:
        server.status = ServerStatus.REJECTED
        server.save(update_fields=["status"])
    audit.record(
        org=org,
        action="server.version_rejected",
        actor=actor,
        target=version,
        server=server.slug,
        details={"version": version.number, "note": note[:500]},
    )
    return version


@transaction.atomic
def server_deprecate(*, org: Organization, actor: User, server: Server, reason: str) -> Server:
    """Mark an approved server deprecated: it keeps working, with the reason shown."""
    return _lifecycle(org, actor, server, reason, ServerStatus.DEPRECATED, (ServerStatus.APPROVED,))


@transaction.atomic
def server_retire(*, org: Organization, actor: User, server: Server, reason: str) -> Server:
    """Retire a server: agents can no longer list or call its tools. Final."""
    return _lifecycle(
        org,
        actor,
        server,
        reason,
        ServerStatus.RETIRED,
        (ServerStatus.APPROVED, ServerStatus.DEPRECATED),
    )


def _lifecycle(
    org: Organization,
    actor: User,
    server: Server,
    reason: str,
    to: str,
    allowed_from: tuple[str, ...],
) -> Server:
    require_perm(org=org, actor=actor, perm=Perm.APPROVE_SERVER)
    reason = (reason or "").strip()
    if not reason:
        raise CatalogError("Give a reason: owners and agents' users see it.", field="reason")
    server = Server.objects.select_for_update().get(pk=server.pk, organization=org)
    if server.status not in allowed_from:
        allowed = " or ".join(allowed_from)
        raise CatalogError(
            f"Only a server that is {allowed} can be {to}; this one is {server.status}.",
            code="invalid_state",
        )
    before = server.status
    server.status = to
    server.status_reason = reason[:2000]
    server.updated_at = timezone.now()
    server.save(update_fields=["status", "status_reason", "updated_at"])
    if to == ServerStatus.RETIRED:
        ServerVersion.objects.filter(server=server, status__in=OPEN_VERSION_STATUSES).update(
            status=VersionStatus.REJECTED, decision_note="The server was retired."
        )
    org_bump_policy_version(org=org)
    audit.record(
        org=org,
        action=f"server.{to}",
        actor=actor,
        target=server,
        server=server.slug,
        details={"before": before, "reason": reason[:500]},
    )
    return server


# --- Drift ----------------------------------------------------------------------------------


def server_sync(*, server_id: int) -> dict[str, Any]:
    """Re-fetch an approved server's tools and compare them with the pinned hashes.

    A changed or removed tool is quarantined (the gateway neither lists nor calls it); a tool
    whose definition is back to the pinned one is released; any difference creates (or
    refreshes) a draft version with the new definitions, for the owner to submit and an
    approver to review against the approved one. An unreachable upstream quarantines nothing
    (down is not changed); the error is recorded. Returns a summary."""
    server = Server.objects.select_related("organization", "owner", "oauth_provider").get(
        pk=server_id
    )
    if server.status not in SERVING_STATUSES or server.approved_version_id is None:
        return {"skipped": "not serving"}
    try:
        # A per-user OAuth server is re-fetched with its owner's own connection: the owner is
        # the one who answers for it (documented in docs/catalog.md).
        listing = fetch_listing(server, acting_user=server.owner)
    except UpstreamError as exc:
        _record_sync_error(server_id, exc)
        return {"error": exc.code}
    return _apply_sync(server_id=server_id, listing=listing)


@transaction.atomic
def _record_sync_error(server_id: int, exc: UpstreamError) -> None:
    server = Server.objects.select_for_update().get(pk=server_id)
    first = not server.last_sync_error
    server.last_sync_error = exc.message[:2000]
    server.last_synced_at = timezone.now()
    server.save(update_fields=["last_sync_error", "last_synced_at"])
    if first:  # audit the transition to failing, not every failed interval
        audit.record(
            org=server.organization,
            action="server.sync_failed",
            target=server,
            server=server.slug,
            outcome="error",
            details={"code": exc.code, "message": exc.message[:500]},
        )


@transaction.atomic
def _apply_sync(*, server_id: int, listing: ToolListing) -> dict[str, Any]:
    server = Server.objects.select_for_update().select_related("organization").get(pk=server_id)
    org = server.organization
    if server.approved_version_id is None:
        return {"skipped": "not approved"}
    pinned = {
        t.name: t
        for t in Tool.objects.select_for_update().filter(version_id=server.approved_version_id)
    }
    live = {t.name: t for t in listing.tools}
    changed = sorted(
        n for n in pinned if n in live and live[n].definition_hash != pinned[n].definition_hash
    )
    removed = sorted(n for n in pinned if n not in live)
    added = sorted(n for n in live if n not in pinned)
    now = timezone.now()
    to_quarantine = [pinned[n] for n in changed + removed if not pinned[n].quarantined]
    to_release = [
        t
        for n, t in pinned.items()
        if t.quarantined and n in live and live[n].definition_hash == t.definition_hash
    ]
    for tool in to_quarantine:
        tool.quarantined = True
        tool.quarantined_at = now
        tool.quarantine_reason = (
            "definition changed upstream" if tool.name in changed else "tool removed upstream"
        )
    Tool.objects.bulk_update(to_quarantine, ["quarantined", "quarantined_at", "quarantine_reason"])
    for tool in to_release:
        tool.quarantined = False
        tool.quarantined_at = None
        tool.quarantine_reason = ""
    Tool.objects.bulk_update(to_release, ["quarantined", "quarantined_at", "quarantine_reason"])
    was_error = bool(server.last_sync_error)
    server.last_sync_error = ""
    server.last_synced_at = now
    server.save(update_fields=["last_sync_error", "last_synced_at"])
    drift = bool(changed or removed or added)
    draft = None
    new_draft = False
    if drift:
        digest = tools_digest((t.name, t.definition_hash) for t in listing.tools)
        open_v = (
            ServerVersion.objects.select_for_update()
            .filter(server=server, status__in=OPEN_VERSION_STATUSES)
            .first()
        )
        if open_v is not None and open_v.tools_digest == digest:
            draft = open_v  # already recorded
        else:
            if open_v is not None and open_v.status == VersionStatus.SUBMITTED:
                # What is under review no longer matches the upstream: approving it would pin
                # definitions nobody serves. Close it and start a fresh draft.
                open_v.status = VersionStatus.REJECTED
                open_v.decision_note = (
                    "The upstream's tools changed while this version was under review; "
                    "a new draft holds the current definitions."
                )
                open_v.reviewed_at = now
                open_v.save(update_fields=["status", "decision_note", "reviewed_at"])
            draft = _store_fetch(
                org=org,
                actor=None,
                server_id=server.pk,
                listing=listing,
                origin=VersionOrigin.DRIFT,
            )
            new_draft = True
    if to_quarantine or to_release:
        org_bump_policy_version(org=org)
    if to_quarantine or new_draft:
        audit.record(
            org=org,
            action="server.drift_detected",
            target=server,
            server=server.slug,
            outcome="failure" if to_quarantine else "success",
            details={
                "changed": changed,
                "removed": removed,
                "added": added,
                "quarantined": sorted(t.name for t in to_quarantine),
                "draft_version": draft.number if draft else None,
            },
        )
    if to_release:
        audit.record(
            org=org,
            action="server.tools_released",
            target=server,
            server=server.slug,
            details={
                "released": sorted(t.name for t in to_release),
                "reason": "definition matches the approved one again",
            },
        )
    if was_error:
        audit.record(org=org, action="server.sync_recovered", target=server, server=server.slug)
    return {
        "changed": changed,
        "removed": removed,
        "added": added,
        "quarantined": sorted(t.name for t in to_quarantine),
        "released": sorted(t.name for t in to_release),
        "draft_version_id": draft.pk if draft else None,
    }


@transaction.atomic
def drift_report(*, server_version_id: int, tool_name: str, observed_hash: str) -> bool:
    """The gateway saw `tool_name` with a definition hashing to `observed_hash` at call time.
    If that differs from the pinned hash, quarantine the tool now and schedule a full sync.
    Returns True when the tool is (now) quarantined. Idempotent."""
    tool = (
        Tool.objects.select_for_update()
        .select_related("server", "version")
        .filter(
            version_id=server_version_id, name=tool_name, version__status=VersionStatus.APPROVED
        )
        .first()
    )
    if tool is None:
        return False
    if tool.definition_hash == observed_hash:
        return tool.quarantined
    if tool.quarantined:
        return True
    tool.quarantined = True
    tool.quarantined_at = timezone.now()
    tool.quarantine_reason = "the gateway saw a different definition at call time"
    tool.save(update_fields=["quarantined", "quarantined_at", "quarantine_reason"])
    org_bump_policy_version(org=tool.server.organization)
    audit.record(
        org=tool.server.organization,
        action="tool.quarantined",
        target=tool,
        server=tool.server.slug,
        tool=tool.name,
        outcome="failure",
        details={
            "pinned_hash": tool.definition_hash,
            "observed_hash": str(observed_hash)[:64],
            "source": "gateway",
        },
    )
    server_id = tool.server_id

    def _enqueue() -> None:
        from catalog.tasks import sync_server_task

        try:
            sync_server_task.delay(server_id)
        except Exception:  # the broker being down must not undo the quarantine
            logger.exception("could not enqueue a sync of server %s after drift", server_id)

    transaction.on_commit(_enqueue)
    return True


def claim_due_servers(*, limit: int | None = None) -> list[int]:
    """Claim up to `limit` serving servers whose last sync is older than the interval, with a
    conditional update per row (a second beat or worker cannot claim the same one)."""
    limit = limit or settings.CATALOG_SYNC_BATCH
    now = timezone.now()
    due_before = now - timedelta(seconds=settings.CATALOG_SYNC_INTERVAL)
    lease_before = now - timedelta(seconds=max(settings.CATALOG_FETCH_TIMEOUT * 4, 120))
    candidates = list(
        Server.objects.filter(status__in=SERVING_STATUSES, approved_version__isnull=False)
        .filter(models_q_due(due_before))
        .filter(models_q_unclaimed(lease_before))
        .order_by("last_synced_at", "pk")
        .values_list("pk", "sync_claimed_at")[: limit * 2]
    )
    claimed: list[int] = []
    for pk, claimed_at in candidates:
        if len(claimed) >= limit:
            break
        if Server.objects.filter(pk=pk, sync_claimed_at=claimed_at).update(sync_claimed_at=now):
            claimed.append(pk)
    return claimed


def models_q_due(before: Any) -> Any:
    from django.db.models import Q

    return Q(last_synced_at__isnull=True) | Q(last_synced_at__lt=before)


def models_q_unclaimed(before: Any) -> Any:
    from django.db.models import Q

    return Q(sync_claimed_at__isnull=True) | Q(sync_claimed_at__lt=before)


def release_claim(*, server_id: int) -> None:
    Server.objects.filter(pk=server_id).update(sync_claimed_at=None)
