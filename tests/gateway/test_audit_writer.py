"""Group commit of `tool.call` audit records (gateway.audit_writer): the guarantees that a
batched writer must keep, then the same guarantees end to end through the gateway."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.db import DataError, OperationalError, connections
from mcp.shared.exceptions import MCPError

from audit import services as audit_services
from audit.models import AuditEvent
from gateway import pipeline
from gateway.audit_writer import AuditWriteFailed, audit_writer
from tests.gateway.conftest import bot_policy, http_server, mcp_client


def _event(org, n: int, **details):
    return audit_services.build_event(
        org=org,
        action="tool.call",
        details={"n": n, **details},
        server="s",
        tool="t",
        decision="allow",
    )


def _committed_ns() -> set[int]:
    """The `n` of every tool.call row, read on a fresh connection of another thread: it sees
    only committed rows."""
    found: set[int] = set()

    def read() -> None:
        try:
            rows = AuditEvent.objects.filter(action="tool.call").values_list("details", flat=True)
            found.update(d["n"] for d in rows)
        finally:
            connections.close_all()

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    return found


@pytest.mark.django_db(transaction=True)
def test_write_returns_only_after_commit_and_concurrent_calls_share_a_batch(org_a):
    async def scenario():
        await audit_writer.write(_event(org_a, 0))
        seen_after_first = _committed_ns()
        # Twenty calls finishing together: one transaction, not twenty.
        batches_before, _ = audit_writer.stats()
        await asyncio.gather(*(audit_writer.write(_event(org_a, n)) for n in range(1, 21)))
        batches_after, rows = audit_writer.stats()
        return seen_after_first, batches_after - batches_before, rows

    seen_after_first, batches, rows = asyncio.run(scenario())
    assert seen_after_first == {0}  # committed (visible to another connection) on return
    assert batches == 1
    assert rows == 21
    assert _committed_ns() == set(range(21))
    ids = list(AuditEvent.objects.order_by("id").values_list("details__n", flat=True))
    assert ids == list(range(21))  # ids follow the order the calls finished in


@pytest.mark.django_db(transaction=True)
def test_a_failing_batch_fails_every_call_in_it(org_a, monkeypatch):
    def down(events):
        raise OperationalError("connection refused")

    monkeypatch.setattr(audit_services, "save_events", down)

    async def scenario():
        return await asyncio.gather(
            *(audit_writer.write(_event(org_a, n)) for n in range(5)), return_exceptions=True
        )

    results = asyncio.run(scenario())
    assert all(isinstance(r, AuditWriteFailed) for r in results), results
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_one_refused_record_fails_only_its_own_call(org_a, monkeypatch):
    real = audit_services.save_events

    def picky(events):
        if any(e.details.get("poison") for e in events):
            raise DataError("unsupported Unicode escape sequence")
        real(events)

    monkeypatch.setattr(audit_services, "save_events", picky)

    async def scenario():
        writes = [audit_writer.write(_event(org_a, n)) for n in range(4)]
        writes.insert(2, audit_writer.write(_event(org_a, 99, poison=True)))
        return await asyncio.gather(*writes, return_exceptions=True)

    results = asyncio.run(scenario())
    assert [type(r).__name__ for r in results] == [
        "NoneType",
        "NoneType",
        "AuditWriteFailed",
        "NoneType",
        "NoneType",
    ]
    assert _committed_ns() == {0, 1, 2, 3}


@pytest.mark.django_db(transaction=True)
def test_a_cancelled_caller_does_not_cancel_its_record(org_a):
    async def scenario():
        task = asyncio.create_task(audit_writer.write(_event(org_a, 7)))
        await asyncio.sleep(0)  # queued
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await audit_writer.write(_event(org_a, 8))  # drains after the first batch

    asyncio.run(scenario())
    assert _committed_ns() == {7, 8}


def _columns(event: AuditEvent) -> dict:
    return {
        f.attname: getattr(event, f.attname)
        for f in AuditEvent._meta.concrete_fields
        if not f.primary_key
    }


@pytest.mark.django_db(transaction=True)
def test_the_ormless_insert_stores_what_the_orm_stores(org_a):
    """save_events (one raw multi-row INSERT) writes every column exactly as Model.save does:
    same values read back, redaction applied, ids in order, events no longer saveable."""
    from audit.context import RequestContext, reset_context, set_context

    token = set_context(RequestContext(request_id="req-12345678", source_ip="10.1.2.3"))
    try:

        def build(n: int):
            return audit_services.build_event(
                org=org_a,
                action="tool.call",
                outcome="denied",
                details={"n": n, "text": 'é ü 日本 "q"', "api_key": "x", "nested": [1, None]},
                server="srv",
                tool="t" * 200,
                decision="deny",
                error_class="policy",
                latency_ms=1.25,
                upstream_latency_ms=None,
            )

        via_orm = build(0)
        via_orm.save(force_insert=True)
        batch = [build(1), build(2), build(3)]
        audit_services.save_events(batch)
        lone = [build(4)]
        audit_services.save_events(lone)
    finally:
        reset_context(token)
    assert [e.pk for e in batch] == sorted(e.pk for e in batch)
    assert batch[0].pk > via_orm.pk and lone[0].pk > batch[-1].pk
    expected = _columns(AuditEvent.objects.get(pk=via_orm.pk))
    for event in [*batch, *lone]:
        stored = _columns(AuditEvent.objects.get(pk=event.pk))
        assert stored["details"].pop("n") == event.details["n"]
        assert stored.pop("occurred_at") is not None
        want = {**expected, "details": {k: v for k, v in expected["details"].items() if k != "n"}}
        want.pop("occurred_at")
        assert stored == want
    assert expected["details"]["api_key"] == "[redacted]"
    assert expected["source_ip"] == "10.1.2.3" and expected["request_id"] == "req-12345678"
    with pytest.raises(RuntimeError):
        audit_services.save_events(batch)  # append-only: saved events cannot be saved again


@pytest.mark.django_db(transaction=True)
def test_values_the_fields_prepare_themselves_are_stored_as_the_orm_stores_them(org_a):
    """Values off the common shapes (an IPv6 source the field normalizes, an integer latency
    in a float column, a details list, an outcome given as a TextChoices member) are stored
    exactly as Model.save stores them."""
    from audit.context import RequestContext, reset_context, set_context
    from audit.models import Outcome

    token = set_context(RequestContext(request_id="req-v6", source_ip="2001:DB8:0:0::1"))
    try:

        def build():
            return audit_services.build_event(
                org=org_a,
                action="tool.call",
                outcome=Outcome.DENIED,
                details={"arguments": ["a", 1, None, {"k": "é"}]},
                tool="t",
                latency_ms=2,
                upstream_latency_ms=0.1,
            )

        via_orm = build()
        via_orm.save(force_insert=True)
        batch = [build(), build()]
        audit_services.save_events(batch)
    finally:
        reset_context(token)
    expected = _columns(AuditEvent.objects.get(pk=via_orm.pk))
    assert expected["source_ip"] == "2001:db8::1" and expected["latency_ms"] == 2.0
    assert expected.pop("occurred_at") is not None
    for event in batch:
        stored = _columns(AuditEvent.objects.get(pk=event.pk))
        assert stored.pop("occurred_at") is not None
        assert stored == expected


@pytest.mark.django_db(transaction=True)
def test_a_batch_longer_than_one_statement_is_still_one_transaction(org_a, monkeypatch):
    """A batch over the rows of one INSERT is several statements in one transaction: all rows
    in order, or (one statement failing) none of them."""
    from django.db import connection

    per_statement = audit_services._rows_per_statement(connection, audit_services._insert_fields())
    assert 8 <= per_statement < 130
    events = [_event(org_a, n) for n in range(130)]
    audit_services.save_events(events)
    assert _committed_ns() == set(range(130))
    assert [e.pk for e in events] == sorted(e.pk for e in events)

    real_insert = audit_services._insert
    calls = []

    def fail_second(conn, fields, chunk):
        calls.append(len(chunk))
        if len(calls) == 2:
            raise DataError("refused")
        return real_insert(conn, fields, chunk)

    monkeypatch.setattr(audit_services, "_insert", fail_second)
    with pytest.raises(DataError):
        audit_services.save_events([_event(org_a, n) for n in range(200, 330)])
    assert len(calls) == 2
    assert _committed_ns() == set(range(130))  # the first statement was rolled back too


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "refused",
    ["nul \u0000 here", "lone \udc80 surrogate", float("nan")],
    ids=["nul", "surrogate", "nan"],
)
def test_a_row_postgres_refuses_fails_only_its_own_call(org_a, refused):
    """No monkeypatch: PostgreSQL itself refuses these in jsonb (a NUL character, a lone
    surrogate, NaN: DataError); the batch is retried row by row and only that call fails."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: SQLite stores a NUL character")

    async def scenario():
        writes = [audit_writer.write(_event(org_a, n)) for n in range(3)]
        writes.insert(1, audit_writer.write(_event(org_a, 99, text=refused)))
        return await asyncio.gather(*writes, return_exceptions=True)

    results = asyncio.run(scenario())
    assert [type(r).__name__ for r in results] == [
        "NoneType",
        "AuditWriteFailed",
        "NoneType",
        "NoneType",
    ]
    assert _committed_ns() == {0, 1, 2}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_nul_in_a_text_column_is_refused_not_cut_short(org_a, monkeypatch):
    """PostgreSQL: rows go through libpq's PQexecParams with text parameters, which would end a
    value at a NUL character and store the rest of the row as if nothing was missing. A tool
    name with a NUL is refused instead (only that call fails) and nothing of it is stored; the
    other rows of the batch go through the libpq path, not the psycopg cursor."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: SQLite stores a NUL character")
    through_libpq = []
    real_exec = audit_services._exec_text_params

    def spy(pg_connection, sql, values):
        through_libpq.append(len(values))
        return real_exec(pg_connection, sql, values)

    monkeypatch.setattr(audit_services, "_exec_text_params", spy)
    bad = _event(org_a, 99)
    bad.tool = "read\x00_file_but_also_delete"

    async def scenario():
        writes = [audit_writer.write(_event(org_a, n)) for n in range(2)]
        writes.insert(1, audit_writer.write(bad))
        return await asyncio.gather(*writes, return_exceptions=True)

    results = asyncio.run(scenario())
    assert [type(r).__name__ for r in results] == ["NoneType", "AuditWriteFailed", "NoneType"]
    assert _committed_ns() == {0, 1}
    assert not AuditEvent.objects.filter(tool__startswith="read").exists()
    assert through_libpq, "the rows did not go through PQexecParams"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_killed_writer_connection_fails_the_call_and_the_next_one_reconnects(org_a):
    """The server ends the writer's session (a restart, an administrator's
    pg_terminate_backend): the call being written fails (its result is withheld), nothing of
    it is stored, and the next call is written on a new connection."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    from gateway.db import run_writer

    def writer_backend() -> int:
        connection.ensure_connection()
        return connection.connection.info.backend_pid

    async def first():
        await audit_writer.write(_event(org_a, 1))
        return await run_writer(writer_backend)

    async def after_the_kill():
        outcomes = []
        for n in (2, 3):
            try:
                await audit_writer.write(_event(org_a, n))
                outcomes.append("written")
            except AuditWriteFailed:
                outcomes.append("failed")
        return outcomes, await run_writer(writer_backend)

    pid = asyncio.run(first())
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    outcomes, new_pid = asyncio.run(after_the_kill())
    assert outcomes == ["failed", "written"]
    assert new_pid != pid
    assert _committed_ns() == {1, 3}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_any_failure_on_the_writer_thread_gets_its_connection_checked(org_a):
    """Work that fails on the writer thread with something other than a database error
    (a bug half-way through) must not leave a dead connection in place for the next record:
    the connection is checked after any failure, so the next call is written."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    from gateway.db import run_writer

    def writer_backend() -> int:
        connection.ensure_connection()
        return connection.connection.info.backend_pid

    def broken() -> None:
        raise RuntimeError("a bug, not a database error")

    async def first():
        await audit_writer.write(_event(org_a, 1))
        return await run_writer(writer_backend)

    async def after_the_kill():
        with pytest.raises(RuntimeError):
            await run_writer(broken)
        await audit_writer.write(_event(org_a, 2))

    pid = asyncio.run(first())
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    asyncio.run(after_the_kill())
    assert _committed_ns() == {1, 2}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_libpq_insert_maps_refusals_to_django_errors(org_a):
    """A statement PostgreSQL refuses on the libpq path raises Django's error class for its
    SQLSTATE (what the writer's row-by-row retry relies on), and the connection stays usable."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    event = _event(org_a, 1)
    event.decision = "x" * 9  # varchar(8)
    with pytest.raises(DataError):
        audit_services.save_events([event])
    audit_services.save_events([_event(org_a, 2)])
    assert _committed_ns() == {2}


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def echo_catalog(gateway, gateway_catalog, fault_server, org_a):
    gateway_catalog(
        org_a,
        servers=[http_server("fault", fault_server.url)],
        policies=[bot_policy("triage", tools=("fault.echo",))],
    )


def _call_echo(gateway, key, message="secret result"):
    """The call's result, or the MCPError it was refused with."""

    async def scenario():
        async with mcp_client(gateway.url("acme"), key, mode="2026-07-28") as client:
            try:
                return await client.call_tool("fault.echo", {"message": message})
            except MCPError as exc:
                return exc

    return asyncio.run(scenario())


@pytest.mark.e2e
def test_call_fails_and_result_is_withheld_when_the_audit_cannot_be_written(
    gateway, echo_catalog, agent_key, monkeypatch
):
    _, key = agent_key("triage-bot")

    def down(events):
        raise OperationalError("connection refused")

    monkeypatch.setattr(audit_services, "save_events", down)
    refused = _call_echo(gateway, key)
    assert isinstance(refused, MCPError)
    assert refused.code == -32050
    assert "audit record" in refused.message
    assert "secret result" not in str(refused)
    assert not AuditEvent.objects.filter(action="tool.call").exists()


@pytest.mark.e2e
def test_concurrent_calls_are_each_audited_once(gateway, echo_catalog, agent_key):
    _, key = agent_key("triage-bot")

    async def scenario():
        async with mcp_client(gateway.url("acme"), key, mode="2026-07-28") as client:
            return await asyncio.gather(
                *(client.call_tool("fault.echo", {"message": f"m{i}"}) for i in range(12))
            )

    results = asyncio.run(scenario())
    assert sorted(r.content[0].text for r in results) == sorted(f"m{i}" for i in range(12))
    rows = AuditEvent.objects.filter(action="tool.call", outcome="success")
    assert sorted(r.details["arguments"]["message"] for r in rows) == sorted(
        f"m{i}" for i in range(12)
    )
    assert len({r.request_id for r in rows}) == 12


@pytest.mark.e2e
def test_a_crash_after_the_commit_loses_no_record(gateway, echo_catalog, agent_key, monkeypatch):
    """The gateway dies between committing the record and answering: the agent gets no result,
    and the record is in the trail."""
    _, key = agent_key("triage-bot")
    real_write = audit_writer.write

    async def write_then_crash(event):
        await real_write(event)
        raise RuntimeError("process died here")

    monkeypatch.setattr(pipeline.audit_writer, "write", write_then_crash)
    assert isinstance(_call_echo(gateway, key, "after-commit"), MCPError)
    event = AuditEvent.objects.get(action="tool.call")
    assert event.details["arguments"] == {"message": "after-commit"}
    assert event.outcome == "success"
