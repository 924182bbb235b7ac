"""Quotas under real concurrency: several OS processes, each with its own kernel on one
PostgreSQL schema (and, for the Redis store, one Redis database), many threads in each.

For the SQL counter store and for the Redis store (vendo-counters-redis):

- ``consume`` against a pooled quota with a per-member cap admits exactly the quota in total,
  no member above its cap; the ledger holds exactly the accepted calls; counters equal it;
- retries with the same idempotency keys, from every process at once, count each key once;
- refunds raced from every process succeed once per consumption;
- reserve/commit/release raced everywhere never push the meter above its limit (sampled
  while it runs) and settle each hold exactly once; counters equal ledger plus open holds.

Workers are this file run as a script; they wait at a barrier (a line on stdin) so all hit
at once, and report JSON. Every wait is bounded. Redis tests are skipped when Redis is
unreachable locally and fail when ``CI`` is set; PostgreSQL is required the same way.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

PROCESSES = 3
THREADS = 6
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)
REDIS_URL = os.environ.get("VENDO_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PLUGIN = "counters-redis"
CATALOG = {
    "features": {"chat": {"kind": "metered", "period": "month"}},
    "plans": {
        "free": {"name": "Free", "default": True, "features": {"chat": 0}},
        "team": {"name": "Team", "prices": [{"interval": "month", "currency": "usd", "amount": "10"}],
                 "features": {"chat": {"limit": 60, "per_member": 25}}},
        "big": {"name": "Big", "prices": [{"interval": "month", "currency": "usd", "amount": "99"}],
                "features": {"chat": 100_000}},
    },
}
TEAM, BIG = "ws_team", "ws_big"
POOL = f"{TEAM}:chat:month:20260101T0000"
MEMBERS = ("usr_a", "usr_b", "usr_c")


# -- both sides ----------------------------------------------------------------------------------


def build_kernel(spec: dict[str, Any]) -> Any:
    """A kernel on the shared database, with the chosen counter store and a frozen clock."""
    from vendo import Kernel, load_settings

    plugins: dict[str, Any] = {}
    settings: dict[str, Any] = {"database_url": spec["database_url"], "data_dir": spec["data_dir"],
                                "plugins": {"autoload": False}}
    plugin_settings = None
    if spec["store"] == "redis":
        import vendo_counters_redis

        plugins[PLUGIN] = vendo_counters_redis
        settings["providers"] = {"counters": "redis"}
        plugin_settings = {PLUGIN: {"url": REDIS_URL, "key_prefix": "qc:"}}
    kernel = Kernel(load_settings(overrides=settings, plugin_settings=plugin_settings), plugins=plugins,
                    clock=lambda: NOW).load()
    kernel.providers.configure(kernel.settings.providers)
    return kernel


# -- the worker process ----------------------------------------------------------------------------


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``spec["scenario"]`` with ``THREADS`` threads once the parent says go."""
    from vendo import Conflict

    kernel = build_kernel(spec)
    kernel.entitlements.catalog()  # warm up: connections, catalog
    print("ready", flush=True)
    sys.stdin.readline()  # the barrier
    process = spec["process"]
    lock = threading.Lock()
    out: dict[str, Any] = {"accepted": 0, "refused": 0, "replayed": 0, "refunded": 0, "conflicts": 0,
                           "settled": 0, "committed": {}, "max_seen": 0, "errors": []}
    stop = threading.Event()

    def count(name: str, value: int = 1) -> None:
        with lock:
            out[name] += value

    def consume(thread: int) -> None:
        for attempt in range(spec["attempts"]):
            member = MEMBERS[(process + thread + attempt) % len(MEMBERS)]
            decision = kernel.entitlements.consume(TEAM, "chat", member=member,
                                                   idempotency_key=f"p{process}-t{thread}-{attempt}")
            count("accepted" if decision.allowed else "refused")

    def retries(thread: int) -> None:
        keys = [f"retry-{index}" for index in range(spec["keys"])]
        random.Random(process * 100 + thread).shuffle(keys)
        for key in keys:
            decision = kernel.entitlements.consume(BIG, "chat", idempotency_key=key)
            assert decision.allowed
            count("replayed" if decision.replayed else "accepted")

    def refunds(thread: int) -> None:
        keys = list(spec["refund_keys"])
        random.Random(process * 100 + thread).shuffle(keys)
        for key in keys:
            try:
                kernel.entitlements.refund(key)
                count("refunded")
            except Conflict:
                count("conflicts")

    def holds(thread: int) -> None:
        rng = random.Random(process * 100 + thread)
        shared = list(spec["holds"])
        rng.shuffle(shared)
        for hold_id in shared:  # raced by every thread of every process: one settlement wins
            try:
                if rng.random() < 0.5:
                    result = kernel.entitlements.commit(hold_id, rng.randint(0, 2))
                    with lock:
                        out["committed"][hold_id] = result["committed"]
                else:
                    kernel.entitlements.release(hold_id)
                count("settled")
            except Conflict:
                count("conflicts")
        for _ in range(spec["attempts"]):  # own holds against the pooled limit
            member = MEMBERS[rng.randrange(len(MEMBERS))]
            estimate = rng.randint(1, 8)
            decision = kernel.entitlements.reserve(TEAM, "chat", estimate, member=member)
            if not decision.allowed:
                count("refused")
                continue
            count("accepted")
            if rng.random() < 0.6:  # at most the estimate: committing more may pass the limit, by design
                result = kernel.entitlements.commit(decision.hold_id, rng.randint(0, estimate))
                with lock:
                    out["committed"][decision.hold_id] = result["committed"]
            else:
                kernel.entitlements.release(decision.hold_id)

    def monitor() -> None:
        while not stop.is_set():
            with kernel.session() as session:
                value = kernel.providers.get("counters").read(session, [POOL])[0]
            with lock:
                out["max_seen"] = max(out["max_seen"], value)
            time.sleep(0.005)

    def guarded(target: Any, *args: Any) -> None:
        try:
            target(*args)
        except Exception as exc:  # reported to the parent, which fails the test
            with lock:
                out["errors"].append(f"{type(exc).__name__}: {exc}")

    scenario = {"consume": consume, "retries": retries, "refunds": refunds, "holds": holds}[spec["scenario"]]
    threads = [threading.Thread(target=guarded, args=(scenario, index)) for index in range(THREADS)]
    watcher = threading.Thread(target=guarded, args=(monitor,))
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=150)
    stop.set()
    watcher.join(timeout=10)
    if any(thread.is_alive() for thread in threads):
        out["errors"].append("a thread did not finish in time")
    kernel.close()
    return out


# -- the parent (pytest) ---------------------------------------------------------------------------

if __name__ != "__main__":
    import pytest
    from sqlalchemy import func, select

    from vendo.db import migrations
    from vendo.entitlements.catalog import parse_catalog
    from vendo.entitlements.models import Counter, Hold, LedgerEntry

    def redis_unreachable() -> str | None:
        import redis

        try:
            client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
            client.ping()
            client.close()
            return None
        except Exception as exc:  # any network failure means "not reachable"
            return f"{type(exc).__name__}: {exc}"

    @pytest.fixture(params=["sql", "redis"])
    def shared(request: pytest.FixtureRequest, postgres_url: str, tmp_path: Path) -> Any:
        """The spec every worker gets, and the parent's own kernel on the same storage."""
        if request.param == "redis":
            reason = redis_unreachable()
            if reason is not None:
                message = f"Redis unreachable at {REDIS_URL}: {reason}"
                if os.environ.get("CI"):
                    pytest.fail(message + " (Redis runs are mandatory in CI)")
                pytest.skip(message)
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            client.flushdb()
            client.close()
        spec = {"database_url": postgres_url, "data_dir": str(tmp_path / "data"), "store": request.param}
        kernel = build_kernel(spec)
        kernel.prepare_storage()
        migrations.upgrade(kernel)
        kernel.entitlements.load_catalog(parse_catalog(CATALOG))
        kernel.entitlements.maintain()  # initialises a fresh Redis
        with kernel.session() as session:
            kernel.entitlements.assign(session, TEAM, "team")
            kernel.entitlements.assign(session, BIG, "big")
        yield spec, kernel
        kernel.close()

    def run_workers(spec: dict[str, Any], **scenario: Any) -> list[dict[str, Any]]:
        """Start the workers, release them together, collect their reports."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_") or k.startswith("VENDO_TEST_")}
        processes = []
        try:
            for index in range(PROCESSES):
                payload = json.dumps({**spec, **scenario, "process": index})
                processes.append(subprocess.Popen([sys.executable, __file__, payload], stdin=subprocess.PIPE,
                                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                                  env=env, cwd=Path(__file__).parent))
            for process in processes:  # wait until every worker is ready (bounded by its own timeout)
                line = _readline(process, timeout=90)
                assert line == "ready", f"worker not ready: {line!r}\n{process.stderr.read()}"
            for process in processes:
                process.stdin.write("go\n")
                process.stdin.flush()
            reports = []
            for process in processes:
                stdout, stderr = process.communicate(timeout=240)
                assert process.returncode == 0, f"worker failed ({process.returncode}):\n{stderr}"
                report = json.loads(stdout.strip().splitlines()[-1])
                assert report["errors"] == [], report["errors"]
                reports.append(report)
            return reports
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=10)

    def _readline(process: subprocess.Popen, timeout: float) -> str:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(process.stdout.readline().strip()))
        reader.start()
        reader.join(timeout)
        return result[0] if result else "<timeout>"

    def total(reports: list[dict[str, Any]], name: str) -> int:
        return sum(report[name] for report in reports)

    def store_values(kernel: Any, keys: list[str]) -> list[int]:
        with kernel.session() as session:
            return kernel.providers.get("counters").read(session, keys)

    def test_consume_admits_exactly_the_quota(shared) -> None:
        spec, kernel = shared
        reports = run_workers(spec, scenario="consume", attempts=8)  # 144 attempts for 60 units
        assert total(reports, "accepted") == 60
        assert total(reports, "accepted") + total(reports, "refused") == PROCESSES * THREADS * 8
        with kernel.session() as session:
            assert session.scalar(select(func.count()).select_from(LedgerEntry)
                                  .where(LedgerEntry.kind == "consume")) == 60
            per_member = dict(session.execute(select(LedgerEntry.member, func.count()).group_by(LedgerEntry.member)).all())
        assert all(count <= 25 for count in per_member.values()) and sum(per_member.values()) == 60
        members = [f"{TEAM}/{member}:chat:month:20260101T0000" for member in MEMBERS]
        assert store_values(kernel, [POOL, *members]) == [60, *(per_member.get(m, 0) for m in MEMBERS)]
        assert kernel.entitlements.drift() == {}
        if spec["store"] == "redis":
            with kernel.session() as session:
                assert session.scalar(select(func.count()).select_from(Counter)) == 0

    def test_idempotent_retries_never_double_count(shared) -> None:
        spec, kernel = shared
        reports = run_workers(spec, scenario="retries", keys=25)
        assert total(reports, "accepted") == 25  # each key recorded once, by one of 18 threads
        assert total(reports, "replayed") == PROCESSES * THREADS * 25 - 25
        with kernel.session() as session:
            assert session.scalar(select(func.count()).select_from(LedgerEntry)) == 25
        assert store_values(kernel, [f"{BIG}:chat:month:20260101T0000"]) == [25]
        assert kernel.entitlements.drift() == {}

    def test_a_refund_is_applied_once(shared) -> None:
        spec, kernel = shared
        keys = [f"paid-{index}" for index in range(20)]
        for key in keys:
            assert kernel.entitlements.consume(BIG, "chat", 2, idempotency_key=key).allowed
        reports = run_workers(spec, scenario="refunds", refund_keys=keys)
        assert total(reports, "refunded") == 20
        assert total(reports, "conflicts") == PROCESSES * THREADS * 20 - 20
        with kernel.session() as session:
            assert session.scalar(select(func.count()).select_from(LedgerEntry)
                                  .where(LedgerEntry.kind == "refund")) == 20
        assert store_values(kernel, [f"{BIG}:chat:month:20260101T0000"]) == [0]
        assert kernel.entitlements.drift() == {}

    def test_holds_never_exceed_the_limit_nor_count_twice(shared) -> None:
        spec, kernel = shared
        holds = []
        for index in range(12):  # raced by every thread of every process
            decision = kernel.entitlements.reserve(TEAM, "chat", 2, member=MEMBERS[index % 3])
            holds.append(decision.hold_id)
        reports = run_workers(spec, scenario="holds", holds=holds, attempts=10)
        assert total(reports, "settled") == 12  # each shared hold settled once, whoever won
        assert max(report["max_seen"] for report in reports) <= 60
        committed: dict[str, int] = {}
        for report in reports:
            for hold_id, actual in report["committed"].items():
                assert hold_id not in committed  # committed by one caller only
                committed[hold_id] = actual
        with kernel.session() as session:
            commits = dict(session.execute(select(LedgerEntry.idempotency_key, LedgerEntry.amount)
                                           .where(LedgerEntry.kind == "commit")).all())
            statuses = dict(session.execute(select(Hold.status, func.count()).group_by(Hold.status)).all())
            open_units = session.scalar(select(func.coalesce(func.sum(Hold.amount), 0)).where(Hold.status == "held"))
        assert commits == {f"hold:{hold_id}": actual for hold_id, actual in committed.items()}
        assert statuses.get("held", 0) == 0 and open_units == 0
        assert store_values(kernel, [POOL]) == [sum(commits.values())]
        assert store_values(kernel, [POOL])[0] <= 60
        assert kernel.entitlements.drift() == {}


if __name__ == "__main__":
    print(json.dumps(worker(json.loads(sys.argv[1]))), flush=True)
