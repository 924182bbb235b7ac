"""The entitlement service on the Redis store, against a real Redis and a real database
(SQLite and PostgreSQL): the ledger in SQL and the counters in Redis stay equal through
rollbacks, data loss, outages and tampering."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, insert
from sqlalchemy.orm import Session

from vendo import Bucket, CounterStoreUnavailable, create_app
from vendo.entitlements.models import Counter, Hold, LedgerEntry

from counters_redis_support import CLOSED_URL, PLUGIN, REDIS_URL

POOL = "ws_1:chat:month:20260101T0000"
ADA = "ws_1/usr_a:chat:month:20260101T0000"
BOB = "ws_1/usr_b:chat:month:20260101T0000"
NOTES = "ws_1:notes:month:20260101T0000"
SEATS = "ws_1:seats:lifetime:19700101T0000"


def redis_values(redis_client, keys=(POOL, ADA, BOB, NOTES, SEATS)) -> dict[str, int]:
    return {key: int(redis_client.get("vendo:" + key) or 0) for key in keys}


def ledger(kernel) -> list[LedgerEntry]:
    with kernel.session() as session:
        return session.query(LedgerEntry).order_by(LedgerEntry.id).all()


def on_team(kernel) -> None:
    with kernel.session() as session:
        kernel.entitlements.assign(session, "ws_1", "team")


def usage_everywhere(kernel) -> None:
    """Pooled and member counters, a refund, tracking, and holds held, committed and released."""
    on_team(kernel)
    for index in range(6):
        kernel.entitlements.consume("ws_1", "chat", 3, member=("usr_a", "usr_b")[index % 2], idempotency_key=f"c{index}")
    kernel.entitlements.refund("c1")
    kernel.entitlements.track("ws_1", "notes", 7)
    kernel.entitlements.track("ws_1", "seats", 2)
    kernel.entitlements.commit(kernel.entitlements.reserve("ws_1", "chat", 10, member="usr_a").hold_id, 4)
    kernel.entitlements.release(kernel.entitlements.reserve("ws_1", "chat", 8, member="usr_b").hold_id)
    kernel.entitlements.reserve("ws_1", "chat", 5, member="usr_b")


EXPECTED = {POOL: 15 + 4 + 5, ADA: 9 + 4, BOB: 6 + 5, NOTES: 7, SEATS: 2}


def test_counters_live_in_redis_and_the_ledger_in_sql(redis_kernel, redis_client) -> None:
    kernel = redis_kernel()
    usage_everywhere(kernel)
    assert redis_values(redis_client) == EXPECTED
    with kernel.session() as session:
        assert session.query(Counter).count() == 0  # the SQL store is not used
    assert len(ledger(kernel)) == 10  # 6 consumes, a refund, 2 tracks, a commit
    refused = kernel.entitlements.consume("ws_1", "chat", 50, member="usr_a")
    assert (refused.allowed, refused.reason, refused.extra) == (False, "USER_QUOTA_EXHAUSTED",
                                                               {"member_limit": 60, "member_used": 13})
    assert redis_values(redis_client) == EXPECTED and len(ledger(kernel)) == 10  # a refusal writes nothing
    assert kernel.entitlements.drift() == {}


def test_a_rollback_after_redis_moved_takes_the_move_back(redis_kernel, redis_client, monkeypatch) -> None:
    kernel = redis_kernel()
    on_team(kernel)
    kernel.entitlements.consume("ws_1", "chat", 2, member="usr_a", idempotency_key="kept")

    def fail(session):
        raise RuntimeError("the database failed at commit")

    event.listen(Session, "before_commit", fail)
    try:
        with pytest.raises(RuntimeError, match="failed at commit"):
            kernel.entitlements.consume("ws_1", "chat", 5, member="usr_a", idempotency_key="rolled-back")
        with pytest.raises(RuntimeError, match="failed at commit"):
            kernel.entitlements.refund("kept")
        with pytest.raises(RuntimeError, match="failed at commit"):
            kernel.entitlements.reserve("ws_1", "chat", 9, member="usr_a")
    finally:
        event.remove(Session, "before_commit", fail)

    store = kernel.providers.get("counters")
    real = store.try_add

    def moved_then_crashed(session, buckets, amount):
        real(session, buckets, amount)
        raise RuntimeError("crashed after Redis moved")

    monkeypatch.setattr(store, "try_add", moved_then_crashed)
    with pytest.raises(RuntimeError, match="crashed"):
        kernel.entitlements.consume("ws_1", "chat", 4, member="usr_a")
    monkeypatch.undo()

    assert [e.idempotency_key for e in ledger(kernel)] == ["kept"]
    assert redis_values(redis_client, (POOL, ADA)) == {POOL: 2, ADA: 2}  # Redis equals the ledger
    assert kernel.entitlements.drift() == {}


def test_flushed_redis_is_refused_then_rebuilt_from_the_ledger(redis_kernel, redis_client) -> None:
    kernel = redis_kernel()
    usage_everywhere(kernel)
    before = redis_values(redis_client)
    redis_client.flushdb()  # a restart without persistence
    with pytest.raises(CounterStoreUnavailable) as info:
        kernel.entitlements.consume("ws_1", "chat", member="usr_a")  # chat fails closed
    assert info.value.details["reason"] == "lost"
    assert kernel.entitlements.consume("ws_1", "notes", 2).fallback  # notes fails open: journalled
    assert redis_client.dbsize() == 0  # nothing counted from zero
    assert kernel.entitlements.rebuild_counters() == 5
    assert redis_values(redis_client) == {**before, NOTES: before[NOTES] + 2}  # the journal applied too
    assert kernel.entitlements.drift() == {}
    assert kernel.entitlements.consume("ws_1", "chat", member="usr_a").used == before[POOL] + 1


def test_maintain_restores_a_store_that_lost_its_data(redis_kernel, redis_client) -> None:
    kernel = redis_kernel()
    usage_everywhere(kernel)
    assert kernel.entitlements.maintain() == 0  # nothing to do
    redis_client.flushdb()
    assert kernel.entitlements.maintain() == 0
    assert redis_values(redis_client) == EXPECTED


def test_reconcile_fixes_tampered_counters(redis_kernel, redis_client) -> None:
    kernel = redis_kernel()
    usage_everywhere(kernel)
    redis_client.set("vendo:" + POOL, 1)
    redis_client.delete("vendo:" + SEATS)
    seen = []
    assert kernel.entitlements.reconcile(fix=False, settle=0.05, on_drift=lambda *a: seen.append(a)) == [POOL, SEATS]
    assert seen == [(POOL, 1, 24), (SEATS, 0, 2)]
    assert kernel.entitlements.reconcile(settle=0.05) == [POOL, SEATS]
    assert redis_values(redis_client) == EXPECTED
    assert kernel.entitlements.reconcile(settle=0.05) == []


def test_reconcile_leaves_a_call_in_flight_alone(redis_kernel, redis_client) -> None:
    """A call whose Redis move is done but whose ledger entry is not committed yet is not
    drift: reconcile must not "fix" it (on PostgreSQL the drift does not survive the next
    comparison; on SQLite reconcile waits for the writer)."""
    kernel = redis_kernel()
    on_team(kernel)
    kernel.entitlements.consume("ws_1", "chat", 2, member="usr_a")
    store = kernel.providers.get("counters")
    result: list[list[str]] = []
    with kernel.entitlements._transaction() as session:
        session.execute(insert(LedgerEntry).values(
            idempotency_key="in-flight", kind="consume", subject="ws_1", member="usr_a", feature="chat",
            period_start=kernel.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0), amount=3,
            buckets=[POOL, ADA], details={}, created_at=kernel.now()))
        store.try_add(session, [Bucket(POOL, 100), Bucket(ADA, 60)], 3)
        thread = threading.Thread(target=lambda: result.append(kernel.entitlements.reconcile(rounds=3, settle=0.5)))
        thread.start()
        time.sleep(0.3)
    thread.join(timeout=60)
    assert result == [[]]
    assert redis_values(redis_client, (POOL, ADA)) == {POOL: 5, ADA: 5}
    assert kernel.entitlements.drift() == {}


def test_an_outage_follows_each_features_policy_and_the_journal_catches_up(redis_kernel, redis_client) -> None:
    up = redis_kernel()
    on_team(up)
    up.entitlements.consume("ws_1", "chat", 2, member="usr_a", idempotency_key="before")
    hold = up.entitlements.reserve("ws_1", "chat", 10, member="usr_a").hold_id
    down = redis_kernel(url=CLOSED_URL)  # the same database, Redis unreachable
    with pytest.raises(CounterStoreUnavailable) as info:
        down.entitlements.consume("ws_1", "chat", member="usr_a")
    assert (info.value.status_code, info.value.details["reason"]) == (503, "unreachable")
    with pytest.raises(CounterStoreUnavailable):
        down.entitlements.check("ws_1", "chat")
    notes = down.entitlements.consume("ws_1", "notes", 4, idempotency_key="n1")
    assert (notes.allowed, notes.fallback, notes.used) == (True, True, 4)
    assert down.entitlements.reserve("ws_1", "notes", 3).fallback
    assert down.entitlements.track("ws_1", "chat", 6, member="usr_b").fallback
    assert down.entitlements.commit(hold, 1)["fallback"]
    assert down.entitlements.refund("before")["fallback"]
    with pytest.raises(CounterStoreUnavailable):
        down.entitlements.apply_journal()
    assert redis_values(redis_client, (POOL, ADA, NOTES)) == {POOL: 12, ADA: 12, NOTES: 0}
    with TestClient(create_app(down)) as client:
        with down.session() as session:
            user = down.identity.create_user(session, "ada@example.com")
            token = down.sessions.issue(session, user.id, "t").access_token
        response = client.post("/api/v1/check", json={"feature": "chat"}, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 503 and response.json()["error"]["code"] == "counter_store_unavailable"

    assert up.entitlements.apply_journal() == 6  # 4 ledger entries, 2 holds
    assert up.entitlements.apply_journal() == 0
    assert redis_values(redis_client, (POOL, ADA, BOB, NOTES)) == {POOL: 7, ADA: 1, BOB: 6, NOTES: 7}
    assert up.entitlements.drift() == {}
    with up.session() as session:
        assert session.query(LedgerEntry).filter_by(applied=False).count() == 0
        assert session.query(Hold).filter_by(applied=False).count() == 0


def test_usage_commands_with_redis(redis_kernel, redis_client, tmp_path) -> None:
    kernel = redis_kernel()
    kernel.entitlements.track("usr_1", "seats", 2)  # a lifetime counter: current in every period
    redis_client.flushdb()
    env = {"VENDO_DATABASE_URL": kernel.settings.resolved_database_url, "VENDO_PLUGINS__ENABLED": PLUGIN,
           "VENDO_PROVIDERS__COUNTERS": "redis", "VENDO_COUNTERS_REDIS__URL": REDIS_URL,
           "VENDO_DATA_DIR": str(tmp_path / "data"), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}

    def vendo(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "vendo", "usage", *args], env=env, capture_output=True,
                              text=True, timeout=120)

    lost = vendo("reconcile")
    assert lost.returncode == 1 and "lost its counters" in lost.stderr
    rebuilt = vendo("rebuild")
    assert rebuilt.returncode == 0 and rebuilt.stdout.strip() == "rebuilt 1 counter in the redis store", rebuilt.stderr
    assert redis_client.get("vendo:usr_1:seats:lifetime:19700101T0000") == "2"
    redis_client.set("vendo:usr_1:seats:lifetime:19700101T0000", 5)
    fixed = vendo("reconcile")
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.splitlines() == ["usr_1:seats:lifetime:19700101T0000: store 5, ledger 2", "fixed 1 counter"]
    env["VENDO_COUNTERS_REDIS__URL"] = CLOSED_URL
    down = vendo("rebuild")
    assert down.returncode == 1 and down.stderr.startswith("error: the Redis counter store at redis://127.0.0.1:1/15")
