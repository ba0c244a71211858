"""Writing the audit trail.

`record(...)` is called by every service inside the same transaction as the change it describes,
so a change and its audit row commit or roll back together.
"""

import datetime
import ipaddress
import json
import operator
from collections.abc import Sequence
from typing import Any

import psycopg
import pydantic_core
from django.db import DataError, connections, models, router, transaction
from django.db.models.base import ModelState
from psycopg import errors as pg_errors
from psycopg import pq
from psycopg.types.json import Jsonb

from audit.context import current
from audit.models import AuditEvent, Outcome
from audit.redaction import redact

_LABEL_MAX = 255


def _label(obj: object | None, limit: int) -> str:
    if obj is None:
        return ""
    return str(obj)[:limit]


def build_event(
    *,
    org: Any | None,
    action: str,
    actor: Any | None = None,
    agent: Any | None = None,
    on_behalf_of: Any | None = None,
    target: models.Model | None = None,
    target_type: str = "",
    target_id: str | int = "",
    target_label: str = "",
    outcome: str = Outcome.SUCCESS,
    details: dict[str, Any] | None = None,
    redact_keys: frozenset[str] = frozenset(),
    **columns: Any,
) -> AuditEvent:
    """The unsaved audit event `record(...)` would append (same arguments), for writers that
    insert several events at once with `save_events`, e.g. the gateway's group commit."""
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or target.pk
        target_label = target_label or str(target)
    ctx = current()
    return _new_event(
        org,
        action=action,
        outcome=outcome,
        actor_user_id=getattr(actor, "pk", None),
        actor_label=_label(actor, 254),
        agent_id=getattr(agent, "pk", None),
        agent_label=_label(getattr(agent, "slug", agent), 100),
        on_behalf_of_id=getattr(on_behalf_of, "pk", None),
        on_behalf_of_label=_label(on_behalf_of, 254),
        target_type=target_type,
        target_id=str(target_id)[:64] if target_id != "" else "",
        target_label=str(target_label)[:_LABEL_MAX],
        details=redact(details or {}, extra_keys=redact_keys),
        request_id=ctx.request_id if ctx else "",
        source_ip=ctx.source_ip if ctx else None,
        **columns,
    )


# Per column: (attname, a constant default, or None with the function that makes one).
_defaults: list[tuple[str, Any, Any]] | None = None


def _default_of(field: models.Field) -> tuple[Any, Any]:
    """(constant, None) when `field.get_default()` always gives the same immutable value,
    else (None, field.get_default): computed once instead of per event."""
    if field.has_default() and callable(field.default):
        return None, field.get_default  # e.g. timezone.now, dict
    value = field.get_default()
    if value is None or isinstance(value, str | int | float | bool):
        return value, None
    return None, field.get_default


def _new_event(org: Any | None, **values: Any) -> AuditEvent:
    """An unsaved AuditEvent with exactly the attributes `AuditEvent(organization=org,
    **values)` would have, without Model.__init__: on the gateway's hot path that constructor
    (every field's default and kwarg handling, the init signals) cost more than the rest of
    the record (tests/audit pins the equivalence). Unknown names are refused, as __init__ does;
    AuditEvent has no init signal receivers to skip."""
    global _defaults
    if _defaults is None:
        _defaults = [(f.attname, *_default_of(f)) for f in AuditEvent._meta.concrete_fields]
    event = AuditEvent.__new__(AuditEvent)
    event._state = ModelState()
    fields = event.__dict__
    for attname, constant, make in _defaults:
        if attname in values:
            fields[attname] = values.pop(attname)
        else:
            fields[attname] = constant if make is None else make()
    if values:
        raise TypeError(f"AuditEvent got unexpected field(s): {', '.join(sorted(values))}")
    fields["organization_id"] = getattr(org, "pk", None)
    if org is not None:
        # As __init__ does for a related instance: `event.organization` needs no query.
        event._state.fields_cache["organization"] = org
    return event


def record(
    *,
    org: Any | None,
    action: str,
    actor: Any | None = None,
    agent: Any | None = None,
    on_behalf_of: Any | None = None,
    target: models.Model | None = None,
    target_type: str = "",
    target_id: str | int = "",
    target_label: str = "",
    outcome: str = Outcome.SUCCESS,
    details: dict[str, Any] | None = None,
    redact_keys: frozenset[str] = frozenset(),
    **columns: Any,
) -> AuditEvent:
    """Append one audit event. Secrets in `details` are redacted before they are stored.

    `actor` is the human who acted (or None), `agent` the agent principal, `on_behalf_of` the user
    an agent acted for. `target` (a model instance) fills target type, id and label; explicit
    target_* arguments win. Extra keyword arguments fill the gateway columns (server, tool,
    decision, error_class, latency_ms, upstream_latency_ms) and must name real columns.
    """
    event = build_event(
        org=org,
        action=action,
        actor=actor,
        agent=agent,
        on_behalf_of=on_behalf_of,
        target=target,
        target_type=target_type,
        target_id=target_id,
        target_label=target_label,
        outcome=outcome,
        details=details,
        redact_keys=redact_keys,
        **columns,
    )
    event.save(force_insert=True)
    return event


def save_events(events: Sequence[AuditEvent]) -> None:
    """Insert events built by `build_event` in one transaction: all of them or none.

    One multi-row `INSERT ... VALUES (...), (...) RETURNING id` on the current thread's
    connection, without the ORM's per-row save machinery: the same columns, each value prepared
    by its model field exactly as `Model.save` prepares it (redaction already happened in
    `build_event`). In autocommit one statement is its own transaction (one round trip, no
    BEGIN/COMMIT); several statements (a batch over the database's parameter limit) or an outer
    transaction go through `transaction.atomic()`. The events get their ids and cannot be saved
    again."""
    for event in events:
        if event.pk is not None or not event._state.adding:
            raise RuntimeError("Audit events are append-only and cannot be changed.")
    if not events:
        return
    connection = connections[router.db_for_write(AuditEvent)]
    fields = _insert_fields()
    per_statement = _per_statement.get(connection.alias)
    if per_statement is None:
        per_statement = _per_statement[connection.alias] = _rows_per_statement(connection, fields)
    chunks = [events[i : i + per_statement] for i in range(0, len(events), per_statement)]
    if len(chunks) == 1 and connection.get_autocommit():
        ids = _insert(connection, fields, chunks[0])
    else:
        with transaction.atomic(using=connection.alias):
            ids = [pk for chunk in chunks for pk in _insert(connection, fields, chunk)]
    for event, pk in zip(events, ids, strict=True):
        event.pk = pk
        event._state.adding = False
        event._state.db = connection.alias


_fields: list[models.Field] | None = None
_per_statement: dict[str, int] = {}


def _insert_fields() -> list[models.Field]:
    global _fields
    if _fields is None:
        _fields = [f for f in AuditEvent._meta.concrete_fields if not f.primary_key]
    return _fields


_PARSE_CACHED_BYTES = 4096  # psycopg re-parses longer statements on every execute


def _rows_per_statement(connection: Any, fields: list[models.Field]) -> int:
    """Rows per INSERT: within the database's parameter limit, and short enough for psycopg's
    parse cache (a batch of ~55 rows; a bigger one is several statements in one transaction)."""
    limit = connection.features.max_query_params
    by_params = max(1, (int(limit) if limit else 65_535) // len(fields))
    one, two = len(_sql(connection, fields, 1)), len(_sql(connection, fields, 2))
    by_length = max(1, 1 + (_PARSE_CACHED_BYTES - one) // (two - one))
    return min(by_params, by_length)


_insert_sql: dict[tuple[str, int], str] = {}


def _sql(connection: Any, fields: list[models.Field], rows: int) -> str:
    key = (connection.alias, rows)
    sql = _insert_sql.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        # Compact text (no spaces): more rows fit under psycopg's parse cache limit.
        columns = ",".join(quote(f.column) for f in fields)
        row = "(" + ",".join(["%s"] * len(fields)) + ")"
        # Identifiers come from the model's metadata only; every value is a bound parameter.
        table, pk = quote(AuditEvent._meta.db_table), quote(AuditEvent._meta.pk.column)
        values = ",".join([row] * rows)
        sql = f"INSERT INTO {table} ({columns}) VALUES {values} RETURNING {pk}"  # noqa: S608
        if len(_insert_sql) < 1024:
            _insert_sql[key] = sql
    return sql


def _insert(connection: Any, fields: list[models.Field], events: Sequence[AuditEvent]) -> list[int]:
    sql = _sql(connection, fields, len(events))
    if connection.vendor == "postgresql":
        return _insert_server_bound(connection, sql, fields, events)
    params = _prepared_params(connection, fields, events)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def _prepared_params(
    connection: Any, fields: list[models.Field], events: Sequence[AuditEvent]
) -> list[Any]:
    """Every row's values as `Model.save` prepares them for the database."""
    params: list[Any] = []
    plain = _plain_types(fields)
    for event in events:
        for field, plain_type in zip(fields, plain, strict=True):
            value = getattr(event, field.attname)
            if plain_type is not None and (value is None or type(value) is plain_type):
                params.append(value)  # what get_db_prep_save would return for it
            else:
                params.append(field.get_db_prep_save(field.pre_save(event, True), connection))
    return params


# Field classes whose `pre_save` is the attribute and whose `get_db_prep_save` returns a value
# of this exact type (or None) unchanged, on every backend: CharField.to_python passes str and
# None through, FloatField/BigIntegerField.get_prep_value are float()/int() of it. Exact
# classes only: a subclass may override either method.
_PLAIN_FIELD_TYPES: dict[type, type] = {
    models.CharField: str,
    models.FloatField: float,
    models.BigIntegerField: int,
}


def _plain_types(fields: list[models.Field]) -> list[type | None]:
    return [_PLAIN_FIELD_TYPES.get(type(field)) for field in fields]


_native_sql: dict[str, str] = {}


def _native(sql: str) -> str:
    """`sql` with PostgreSQL's own `$n` placeholders instead of `%s` (the statement text holds
    no other `%`: identifiers come from the model's metadata)."""
    native = _native_sql.get(sql)
    if native is None:
        parts = sql.split("%s")
        native = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], start=1))
        if len(_native_sql) < 1024:
            _native_sql[sql] = native
    return native


def _insert_server_bound(
    connection: Any, sql: str, fields: list[models.Field], events: Sequence[AuditEvent]
) -> list[int]:
    """PostgreSQL: the values travel beside the statement (server-side binding) instead of
    being quoted into its text, written with `$n` placeholders. An unnamed statement, never a
    prepared one, so this works behind PgBouncer's transaction pooling too. Errors are
    Django's, as on the ORM's own cursor.

    The values the audit trail holds (text, numbers, timestamps, JSON, an IP address) go
    straight from the events to PostgreSQL's text input format (`_text_values`) and through
    libpq's PQexecParams (`_exec_text_params`): the fields' per-value preparation and psycopg's
    cursor machinery (query conversion, dumpers, its wait loop) cost the gateway's writer
    thread more CPU than the insert's round trip. Anything else goes the way it went before:
    each value prepared by its field, adapted by psycopg's RawCursor."""
    connection.ensure_connection()
    pg_connection = connection.connection
    values: list[bytes | None] | None = None
    # Outside autocommit psycopg opens the transaction (BEGIN) with a statement's first
    # execute: leave that first statement to it, so the batch stays one transaction.
    if pg_connection.autocommit or pg_connection.pgconn.transaction_status == (
        pq.TransactionStatus.INTRANS
    ):
        values = _text_values(connection, fields, events)
    with connection.wrap_database_errors:
        if values is not None:
            return _exec_text_params(pg_connection, _native(sql).encode(), values)
        params = _prepared_params(connection, fields, events)
        with psycopg.RawCursor(pg_connection) as cursor:
            cursor.execute(_native(sql), params, prepare=False)
            return [row[0] for row in cursor.fetchall()]


_NUL_REFUSED = "PostgreSQL text fields cannot contain NUL (0x00) bytes"
_GENERIC = object()  # an encoder's "not mine: prepare it through the field"


def _text(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):  # TextChoices members are str too
        if "\x00" in value:
            # libpq would end the value at the NUL and store the rest of the row as if nothing
            # was missing; psycopg refuses it, and so does this.
            raise DataError(_NUL_REFUSED)
        return value.encode()
    return _GENERIC


def _integer(value: Any) -> Any:
    if value is None:
        return None
    return str(value).encode() if type(value) is int else _GENERIC


def _float(value: Any) -> Any:
    if value is None:
        return None
    if type(value) is float:
        return repr(value).encode()
    return repr(float(value)).encode() if type(value) is int else _GENERIC  # FloatField: float()


def _timestamp(value: Any) -> Any:
    if value is None:
        return None
    if type(value) is datetime.datetime and value.tzinfo is not None:
        return value.isoformat().encode()
    return _GENERIC  # naive datetimes get Django's time zone handling


def _json(value: Any) -> Any:
    if type(value) is dict or type(value) is list:
        # What JSONField (no encoder) hands psycopg's Jsonb is json.dumps(value); PostgreSQL
        # stores the parsed value, so any JSON text of the same value stores the same jsonb.
        # pydantic-core writes it several times faster; NaN and Infinity stay literal (and
        # PostgreSQL refuses them, as before), NUL stays escaped (refused as \u0000). A value
        # it cannot write (a lone surrogate) gets json.dumps's text, as before.
        try:
            return pydantic_core.to_json(value, inf_nan_mode="constants")
        except pydantic_core.PydanticSerializationError:
            return json.dumps(value).encode()
    return _GENERIC


def _ip_address(value: Any) -> Any:
    if value is None or value == "":
        return None
    if type(value) is str and ":" not in value:
        # Django hands PostgreSQL `ipaddress.ip_address(value)` (refusing what is not one);
        # IPv6 first goes through its clean_ipv6_address: left to the field. Remembered:
        # the same few client addresses come back on every record.
        text = _ip_texts.get(value)
        if text is None:
            text = str(ipaddress.ip_address(value)).encode()
            if len(_ip_texts) < 4096:
                _ip_texts[value] = text
        return text
    return _GENERIC


_ip_texts: dict[str, bytes] = {}


# (the fields, their encoders, a getter of all their attributes) for `_insert_fields()`.
_reader: tuple[list[models.Field], list[Any], Any] | None = None


def _row_reader(fields: list[models.Field]) -> tuple[list[Any], Any]:
    """(`_encoders(fields)`, a getter of the fields' attributes in one call), built once for
    the insert's field list."""
    global _reader
    if _reader is not None and _reader[0] is fields:
        return _reader[1], _reader[2]
    encoders = _encoders(fields)
    getter = operator.attrgetter(*(f.attname for f in fields))
    if fields is _insert_fields():
        _reader = (fields, encoders, getter)
    return encoders, getter


def _encoders(fields: list[models.Field]) -> list[Any]:
    """Per field, the function giving a value's text form as `get_db_prep_save` + psycopg
    would send it, for the exact field classes whose `pre_save` is the attribute (no
    auto_now, no subclass overriding either step), or None: prepare through the field."""
    found = []
    for field in fields:
        kind = type(field)
        encoder: Any = None
        if kind is models.CharField:
            encoder = _text
        elif kind in (models.BigIntegerField, models.IntegerField) or (
            kind is models.ForeignKey
            and type(field.target_field) in (models.AutoField, models.BigAutoField)
        ):
            encoder = _integer
        elif kind is models.FloatField:
            encoder = _float
        elif kind is models.DateTimeField and not (field.auto_now or field.auto_now_add):
            encoder = _timestamp
        elif kind is models.JSONField and field.encoder is None:
            encoder = _json
        elif kind is models.GenericIPAddressField:
            encoder = _ip_address
        found.append(encoder)
    return found


def _text_values(
    connection: Any, fields: list[models.Field], events: Sequence[AuditEvent]
) -> list[bytes | None] | None:
    """Every row's values in PostgreSQL's text input format (the server infers each
    parameter's type from its INSERT column), or None when a value is of a type this does not
    encode (the caller then lets psycopg adapt the prepared values)."""
    out: list[bytes | None] = []
    append = out.append
    encoders, attnames = _row_reader(fields)
    for event in events:
        # All of the row's attributes in one call, then the common case (a str column
        # holding a str) inline: this runs for every audit row the gateway writes.
        for field, encoder, value in zip(fields, encoders, attnames(event), strict=True):
            if encoder is _text and type(value) is str:
                if "\x00" in value:
                    raise DataError(_NUL_REFUSED)
                append(value.encode())
                continue
            text = _GENERIC if encoder is None else encoder(value)
            if text is _GENERIC:
                prepared = field.get_db_prep_save(field.pre_save(event, True), connection)
                if isinstance(prepared, Jsonb):
                    text = _text((prepared.dumps or json.dumps)(prepared.obj))
                elif isinstance(prepared, ipaddress.IPv4Address | ipaddress.IPv6Address):
                    text = str(prepared).encode()
                else:
                    text = _text(prepared)
                    if text is _GENERIC:
                        text = _integer(prepared)
                    if text is _GENERIC:
                        text = _float(prepared)
                    if text is _GENERIC:
                        text = _timestamp(prepared)
                    if text is _GENERIC:
                        return None
            append(text)
    return out


def _exec_text_params(pg_connection: Any, sql: bytes, values: list[bytes | None]) -> list[int]:
    """Run the INSERT ... RETURNING id with text parameters on psycopg's libpq connection
    (PQexecParams releases the GIL while it waits) and return the ids. A refused statement
    raises the psycopg error PostgreSQL's SQLSTATE maps to (a lost connection:
    OperationalError), which the caller turns into Django's."""
    pgconn = pg_connection.pgconn
    result = pgconn.exec_params(sql, values)
    if result.status != pq.ExecStatus.TUPLES_OK:
        lost = pgconn.status != pq.ConnStatus.OK
        if result.status == pq.ExecStatus.FATAL_ERROR and not lost:
            raise pg_errors.error_from_result(result, encoding=pg_connection.info.encoding)
        # The server went away (a restart, a killed backend): an OperationalError, so the
        # writer fails the whole batch at once and Django drops the connection.
        message = pgconn.error_message.decode("utf-8", "replace").strip()
        raise psycopg.OperationalError(
            message or f"unexpected result of the audit insert: {pq.ExecStatus(result.status).name}"
        )
    return [int(result.get_value(row, 0)) for row in range(result.ntuples)]
