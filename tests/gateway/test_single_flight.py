"""Cache refreshes under load: requests in flight when an agent key's or an organization's
cache entry expires share one database read (gateway.db.SingleFlight), without changing what
each request gets."""

from __future__ import annotations

import asyncio

from gateway import auth as auth_module
from gateway import directory as directory_module
from gateway.auth import AgentKeyAuthenticator, AuthFailure
from gateway.db import SingleFlight


def test_concurrent_callers_share_one_execution_and_a_cancelled_one_does_not_cancel_it():
    flight = SingleFlight()
    runs = []

    async def work():
        runs.append(1)
        await asyncio.sleep(0.05)
        return len(runs)

    async def scenario():
        waiters = [asyncio.create_task(flight.run("k", work)) for _ in range(8)]
        await asyncio.sleep(0)
        waiters[0].cancel()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        again = await flight.run("k", work)  # the first one finished: a new execution
        return results, again

    results, again = asyncio.run(scenario())
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1:] == [1] * 7
    assert again == 2


def test_an_error_reaches_every_waiter_and_forget_starts_afresh():
    flight = SingleFlight()
    calls = []

    async def failing():
        calls.append("fail")
        await asyncio.sleep(0.02)
        raise RuntimeError("database down")

    async def ok():
        calls.append("ok")
        return "fresh"

    async def scenario():
        first = [asyncio.create_task(flight.run("k", failing)) for _ in range(3)]
        await asyncio.sleep(0)
        flight.forget("k")
        after_forget = await flight.run("k", ok)
        return await asyncio.gather(*first, return_exceptions=True), after_forget

    errors, after_forget = asyncio.run(scenario())
    assert all(isinstance(e, RuntimeError) for e in errors)
    assert after_forget == "fresh"
    assert calls == ["fail", "ok"]


def test_an_expired_key_is_looked_up_once_for_all_requests_in_flight(monkeypatch):
    lookups = []

    def lookup(token):
        lookups.append(token)
        return None  # unknown key: every request is refused as before

    async def run_db(fn, *args):
        await asyncio.sleep(0.02)
        return fn(*args)

    monkeypatch.setattr(auth_module, "_lookup_key", lookup)
    monkeypatch.setattr(auth_module, "run_db", run_db)
    authenticator = AgentKeyAuthenticator()

    async def scenario():
        return await asyncio.gather(
            *(authenticator.authenticate("mgw_x", org_slug="acme") for _ in range(10)),
            return_exceptions=True,
        )

    results = asyncio.run(scenario())
    assert all(isinstance(r, AuthFailure) for r in results)
    assert lookups == ["mgw_x"]
    authenticator.forget_all()
    asyncio.run(scenario())
    assert lookups == ["mgw_x", "mgw_x"]


def test_an_expired_policy_check_is_one_version_read_for_all_requests(monkeypatch):
    reads, loads = [], []
    view = directory_module.OrgView(org_id=7, version=3, compiled=None, servers={})  # type: ignore[arg-type]

    def read_version(org_id):
        reads.append(org_id)
        return 3

    def load(org_id):
        loads.append(org_id)
        return view

    async def run_db(fn, *args):
        await asyncio.sleep(0.02)
        return fn(*args)

    monkeypatch.setattr(directory_module, "_read_version", read_version)
    monkeypatch.setattr(directory_module, "load_org_view", load)
    monkeypatch.setattr(directory_module, "run_db", run_db)
    directory = directory_module.Directory()

    async def scenario():
        return await asyncio.gather(*(directory.org_view(7) for _ in range(10)))

    assert asyncio.run(scenario()) == [view] * 10
    assert (reads, loads) == ([7], [7])
    directory._views[7] = (0.0, view)  # expired; same version: kept without a reload
    assert asyncio.run(scenario()) == [view] * 10
    assert (reads, loads) == ([7, 7], [7])
