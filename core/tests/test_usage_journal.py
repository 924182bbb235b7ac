"""Counter stores that fail: failure policies, the usage journal, compensation of rolled-back
moves, and counters rebuilt and reconciled from the ledger (``vendo usage rebuild|reconcile``).

A switchable in-memory store (``FlakyStore``) stands for a store outside the database; the
Redis store's own tests (plugins/counters-redis) do the same against a real Redis. Runs on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.orm import Session

from vendo import Bucket, CounterStoreUnavailable, create_app, hookimpl, on_rollback
from vendo.entitlements.catalog import parse_catalog
from vendo.entitlements.models import Counter, Hold, LedgerEntry

CATALOG = parse_catalog({
    "features": {
        "chat": {"kind": "metered", "period": "month"},                               # fails closed
        "notes": {"kind": "metered", "period": "month", "failure_policy": "fail_open"},
        "seats": {"kind": "limit"},                                                    # fails open
        "export": {"kind": "boolean"},
    },
    "plans": {
        "free": {"name": "Free", "default": True, "features": {"chat": 5, "notes": 5, "seats": 2}},
        "team": {"name": "Team", "prices": [{"interval": "month", "currency": "usd", "amount": "10"}],
                 "features": {"chat": {"limit": 100, "per_member": 60}, "notes": 100, "seats": 10,
                              "export": True}},
    },
})


class FlakyStore:
    """An in-memory counter store outside the database: it can be switched off (unreachable),
    and registers the opposite of each move with ``on_rollback`` like a real one."""

    name = "flaky"

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.up = True
        self.lock = threading.Lock()

    def _check(self) -> None:
        if not self.up:
            raise CounterStoreUnavailable("flaky store is down", details={"store": "flaky", "reason": "unreachable"})

    def try_add(self, session, buckets: list[Bucket], amount: int):
        self._check()
        with self.lock:
            if any(b.limit is not None and self.values.get(b.key, 0) + amount > b.limit for b in buckets):
                return None
            return self._move(session, buckets, amount)

    def add(self, session, buckets: list[Bucket], amount: int):
        self._check()
        with self.lock:
            return self._move(session, buckets, amount)

    def _move(self, session, buckets, amount):
        for bucket in buckets:
            self.values[bucket.key] = self.values.get(bucket.key, 0) + amount
        on_rollback(session, lambda: self.add(None, [Bucket(b.key, None) for b in buckets], -amount))
        return [self.values[b.key] for b in buckets]

    def read(self, session, keys):
        self._check()
        return [self.values.get(k, 0) for k in keys]

    def overwrite(self, session, values):
        self._check()
        with self.lock:
            self.values.update(values)


class FlakyCounters:
    def __init__(self) -> None:
        self.store = FlakyStore()

    @hookimpl
    def vendo_register_counter_stores(self, register):
        register("flaky", self.store)


@pytest.fixture
def flaky(migrated_kernel, vendo_clock):
    plugin = FlakyCounters()
    kernel = migrated_kernel({"flaky-counters": plugin}, providers={"counters": "flaky"}, clock=vendo_clock)
    kernel.providers.configure(kernel.settings.providers)
    kernel.entitlements.load_catalog(CATALOG)
    return kernel, plugin.store


@pytest.fixture
def sql(migrated_kernel, vendo_clock):
    kernel = migrated_kernel(clock=vendo_clock)
    kernel.providers.configure({})
    kernel.entitlements.load_catalog(CATALOG)
    return kernel


def ledger(kernel, **filters) -> list[LedgerEntry]:
    with kernel.session() as session:
        return session.query(LedgerEntry).filter_by(**filters).order_by(LedgerEntry.id).all()


# -- failure policies -------------------------------------------------------------------------------


def test_fail_closed_refuses_with_503_and_records_nothing(flaky) -> None:
    kernel, store = flaky
    store.up = False
    for call in (lambda: kernel.entitlements.consume("usr_1", "chat", idempotency_key="k1"),
                 lambda: kernel.entitlements.check("usr_1", "chat"),
                 lambda: kernel.entitlements.reserve("usr_1", "chat", 2)):
        with pytest.raises(CounterStoreUnavailable) as info:
            call()
        assert (info.value.code, info.value.status_code) == ("counter_store_unavailable", 503)
    assert ledger(kernel) == []
    with kernel.session() as session:
        assert session.query(Hold).count() == 0


def test_decisions_that_do_not_need_the_store_still_answer(flaky) -> None:
    kernel, store = flaky
    store.up = False
    assert kernel.entitlements.check("usr_1", "export").reason == "TIER_LIMITED"  # boolean: no counter
    with kernel.session() as session:
        kernel.entitlements.assign(session, "usr_1", "team")
    assert kernel.entitlements.check("usr_1", "export").allowed


def test_fail_open_allows_journals_and_applies_when_back(flaky) -> None:
    kernel, store = flaky
    assert kernel.entitlements.consume("usr_1", "notes", 2, idempotency_key="n0").used == 2
    store.up = False
    decision = kernel.entitlements.consume("usr_1", "notes", 3, idempotency_key="n1")
    assert (decision.allowed, decision.fallback, decision.used) == (True, True, 5)  # used: from the ledger
    assert decision.to_dict()["fallback"] is True
    check = kernel.entitlements.check("usr_1", "notes")
    assert check.allowed and check.fallback and check.remaining == 0
    again = kernel.entitlements.consume("usr_1", "notes", 3, idempotency_key="n1")  # a retry is still a replay
    assert again.replayed and again.used == 5
    assert [e.applied for e in ledger(kernel)] == [True, False]
    with pytest.raises(CounterStoreUnavailable):
        kernel.entitlements.apply_journal()  # still down: nothing changes
    store.up = True
    assert kernel.entitlements.apply_journal() == 1
    assert kernel.entitlements.apply_journal() == 0  # idempotent
    assert kernel.entitlements.check("usr_1", "notes").used == 5
    assert all(e.applied for e in ledger(kernel)) and kernel.entitlements.drift() == {}


def test_settlements_are_journalled_whatever_the_policy(flaky) -> None:
    kernel, store = flaky
    with kernel.session() as session:
        kernel.entitlements.assign(session, "ws_1", "team")
    kernel.entitlements.consume("ws_1", "chat", 10, member="usr_a", idempotency_key="c1")
    hold = kernel.entitlements.reserve("ws_1", "chat", 20, member="usr_a")
    other = kernel.entitlements.reserve("ws_1", "chat", 5, member="usr_a")
    store.up = False
    assert kernel.entitlements.track("ws_1", "chat", 4, member="usr_a").fallback  # chat fails closed: tracked anyway
    refund = kernel.entitlements.refund("c1")
    assert refund["fallback"] and refund["used"] == 4 + 20 + 5  # 10 - 10 + 4, holds 20 + 5
    committed = kernel.entitlements.commit(hold.hold_id, 7)
    assert committed["fallback"] and committed["used"] == 4 + 7 + 5
    assert kernel.entitlements.release(other.hold_id)["fallback"]
    store.up = True
    assert store.values["ws_1:chat:month:20260101T0000"] == 10 + 20 + 5  # nothing moved while down
    assert kernel.entitlements.apply_journal() == 5  # track, refund, commit entries; two holds
    assert store.values["ws_1:chat:month:20260101T0000"] == 4 + 7
    assert store.values["ws_1/usr_a:chat:month:20260101T0000"] == 4 + 7
    assert kernel.entitlements.drift() == {}


def test_holds_reserved_while_down_count_once_the_store_is_back(flaky) -> None:
    kernel, store = flaky
    store.up = False
    first = kernel.entitlements.reserve("usr_1", "notes", 3)
    second = kernel.entitlements.reserve("usr_1", "notes", 2)
    assert first.fallback and first.hold_id and second.used == 5
    kernel.entitlements.release(second.hold_id)  # never counted: nothing left to take back
    store.up = True
    assert kernel.entitlements.commit(first.hold_id, 1)["used"] == 1  # the estimate was never counted
    assert kernel.entitlements.apply_journal() == 0
    assert store.values.get("usr_1:notes:month:20260101T0000", 0) == 1
    third = kernel.entitlements.reserve("usr_1", "notes", 4)
    store.up = False
    kernel.entitlements.release(third.hold_id)  # counted: taking it back waits in the journal
    store.up = True
    assert kernel.entitlements.apply_journal() == 1 and store.values["usr_1:notes:month:20260101T0000"] == 1
    assert kernel.entitlements.drift() == {}


def test_http_answers_503_in_the_one_error_shape(flaky) -> None:
    kernel, store = flaky
    with kernel.session() as session:
        user = kernel.identity.create_user(session, "ada@example.com")
        token = kernel.sessions.issue(session, user.id, "t").access_token
    store.up = False
    with TestClient(create_app(kernel)) as client:
        response = client.post("/api/v1/consume", json={"feature": "chat"},
                               headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 503 and response.headers["retry-after"] == "5"
        error = response.json()["error"]
        assert error["code"] == "counter_store_unavailable" and error["details"]["reason"] == "unreachable"
        assert error["request_id"]
        fallback = client.post("/api/v1/consume", json={"feature": "notes"},
                               headers={"Authorization": f"Bearer {token}"})
        assert fallback.status_code == 200 and fallback.json()["fallback"] is True


def test_the_server_applies_the_journal_in_the_background(flaky, monkeypatch) -> None:
    import vendo.app

    monkeypatch.setattr(vendo.app, "JOURNAL_INTERVAL", 0.05)
    kernel, store = flaky
    store.up = False
    assert kernel.entitlements.consume("usr_1", "notes", idempotency_key="bg").fallback
    with TestClient(create_app(kernel)):
        time.sleep(0.3)
        assert not ledger(kernel)[0].applied  # still down
        store.up = True
        deadline = time.monotonic() + 10
        while not ledger(kernel)[0].applied and time.monotonic() < deadline:
            time.sleep(0.05)
    assert ledger(kernel)[0].applied and store.values["usr_1:notes:month:20260101T0000"] == 1


def test_the_journal_loop_survives_errors_and_stops(flaky) -> None:
    from vendo.app import run_usage_journal

    kernel, store = flaky
    store.up = False
    calls = []
    original = kernel.entitlements.maintain

    def maintain():
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return original()

    kernel.entitlements.maintain = maintain

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(run_usage_journal(kernel, stop, 0.01))
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert len(calls) >= 3


# -- compensation ------------------------------------------------------------------------------------


def test_a_failed_commit_takes_the_store_move_back(flaky) -> None:
    kernel, store = flaky
    kernel.entitlements.consume("usr_1", "chat", 2, idempotency_key="ok")

    def fail(session):
        raise RuntimeError("the database went away at commit")

    event.listen(Session, "before_commit", fail)
    try:
        with pytest.raises(RuntimeError, match="went away"):
            kernel.entitlements.consume("usr_1", "chat", 3, idempotency_key="lost")
        with pytest.raises(RuntimeError, match="went away"):
            kernel.entitlements.refund("ok")
    finally:
        event.remove(Session, "before_commit", fail)
    assert store.values["usr_1:chat:month:20260101T0000"] == 2
    assert [e.idempotency_key for e in ledger(kernel)] == ["ok"]
    assert kernel.entitlements.drift() == {}


def test_a_failure_after_the_store_moved_takes_it_back(flaky, monkeypatch) -> None:
    kernel, store = flaky
    real = store.try_add

    def moved_then_failed(session, buckets, amount):
        real(session, buckets, amount)
        raise RuntimeError("crashed after the store moved")

    monkeypatch.setattr(store, "try_add", moved_then_failed)
    with pytest.raises(RuntimeError, match="crashed"):
        kernel.entitlements.reserve("usr_1", "chat", 4)
    with pytest.raises(RuntimeError, match="crashed"):
        kernel.entitlements.consume("usr_1", "chat", 1)
    assert store.values == {"usr_1:chat:month:20260101T0000": 0}
    assert ledger(kernel) == []


# -- rebuild and reconcile ---------------------------------------------------------------------------


def usage_everywhere(kernel) -> str:
    """A bit of everything: pooled and member counters, refunds, holds held, committed and released."""
    with kernel.session() as session:
        kernel.entitlements.assign(session, "ws_1", "team")
    for index in range(6):
        kernel.entitlements.consume("ws_1", "chat", 3, member=f"usr_{index % 2}", idempotency_key=f"c{index}")
    kernel.entitlements.refund("c1")
    kernel.entitlements.track("ws_1", "notes", 7)
    kernel.entitlements.track("ws_1", "seats", 2)
    kernel.entitlements.commit(kernel.entitlements.reserve("ws_1", "chat", 10, member="usr_0").hold_id, 4)
    kernel.entitlements.release(kernel.entitlements.reserve("ws_1", "chat", 8, member="usr_1").hold_id)
    return kernel.entitlements.reserve("ws_1", "chat", 5, member="usr_1").hold_id


EXPECTED = {"ws_1:chat:month:20260101T0000": 15 + 4 + 5, "ws_1/usr_0:chat:month:20260101T0000": 9 + 4,
            "ws_1/usr_1:chat:month:20260101T0000": 6 + 5, "ws_1:notes:month:20260101T0000": 7,
            "ws_1:seats:lifetime:19700101T0000": 2}


def counters(kernel) -> dict[str, int]:
    with kernel.session() as session:
        return {c.key: c.value for c in session.query(Counter)}


def test_sql_counters_are_rebuilt_from_the_ledger(sql) -> None:
    usage_everywhere(sql)
    assert counters(sql) == EXPECTED
    with sql.session() as session:
        session.query(Counter).delete()
    assert sql.entitlements.rebuild_counters() == 5
    assert counters(sql) == EXPECTED
    assert sql.entitlements.check("ws_1", "chat", member="usr_0").used == 24


def test_rebuild_covers_current_periods_unless_asked(sql, vendo_clock) -> None:
    sql.entitlements.consume("usr_1", "chat", 2)
    vendo_clock.advance(days=40)
    sql.entitlements.consume("usr_1", "chat", 1)
    with sql.session() as session:
        session.query(Counter).delete()
    assert sql.entitlements.rebuild_counters() == 1
    assert counters(sql) == {"usr_1:chat:month:20260201T0000": 1}
    assert sql.entitlements.rebuild_counters(all_periods=True) == 2
    assert counters(sql)["usr_1:chat:month:20260101T0000"] == 2


def test_sql_reconcile_fixes_drift_exactly(sql) -> None:
    usage_everywhere(sql)
    assert sql.entitlements.reconcile() == []
    with sql.session() as session:
        session.get(Counter, "ws_1:chat:month:20260101T0000").value = 3
        session.get(Counter, "ws_1:notes:month:20260101T0000").value = 70
    seen = []
    found = sql.entitlements.reconcile(fix=False, on_drift=lambda *args: seen.append(args))
    assert found == ["ws_1:chat:month:20260101T0000", "ws_1:notes:month:20260101T0000"]
    assert seen == [("ws_1:chat:month:20260101T0000", 3, 24), ("ws_1:notes:month:20260101T0000", 70, 7)]
    assert counters(sql)["ws_1:notes:month:20260101T0000"] == 70  # reported, not fixed
    assert sql.entitlements.reconcile() == found
    assert counters(sql) == EXPECTED and sql.entitlements.drift() == {}


def test_store_reconcile_applies_the_journal_then_fixes_stable_drift(flaky) -> None:
    kernel, store = flaky
    usage_everywhere(kernel)
    assert store.values == EXPECTED
    store.up = False
    kernel.entitlements.consume("ws_1", "notes", 2)  # journalled
    store.up = True
    store.values["ws_1:seats:lifetime:19700101T0000"] = 9
    assert kernel.entitlements.reconcile(settle=0.01) == ["ws_1:seats:lifetime:19700101T0000"]
    assert store.values == {**EXPECTED, "ws_1:notes:month:20260101T0000": 9}
    store.values.clear()
    assert kernel.entitlements.rebuild_counters() == 5
    assert store.values == {**EXPECTED, "ws_1:notes:month:20260101T0000": 9}


def test_usage_commands(sql, tmp_path) -> None:
    usage_everywhere(sql)
    with sql.session() as session:
        session.get(Counter, "ws_1:chat:month:20260101T0000").value = 1
    env = {"VENDO_DATABASE_URL": sql.settings.resolved_database_url, "VENDO_PLUGINS__AUTOLOAD": "false",
           "VENDO_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}

    def vendo(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "vendo", "usage", *args], env=env, capture_output=True,
                              text=True, timeout=120)

    # The CLI's clock is the real one: the test's usage lies in January 2026, a past period.
    dry = vendo("reconcile", "--dry-run", "--all-periods")
    assert dry.returncode == 1, dry.stderr
    assert "ws_1:chat:month:20260101T0000: store 1, ledger 24" in dry.stdout
    fixed = vendo("reconcile", "--all-periods")
    assert fixed.returncode == 0 and "fixed 1 counter" in fixed.stdout, fixed.stderr
    assert vendo("reconcile", "--all-periods").stdout.strip() == "no drift: the sql store agrees with the ledger"
    with sql.session() as session:
        session.query(Counter).delete()
    rebuilt = vendo("rebuild", "--all-periods")
    assert rebuilt.returncode == 0 and rebuilt.stdout.strip() == "rebuilt 5 counters in the sql store", rebuilt.stderr
    assert counters(sql) == EXPECTED
    assert vendo("rebuild").stdout.strip() == "rebuilt 1 counter in the sql store"  # the lifetime one
