"""Entitlement hot path: ``consume`` against raw baselines of the same engine.

Run: ``uv run python benchmarks/bench_consume.py`` (``--quick`` for a smoke run).

For each counter engine, in the same run, one caller and ``--threads`` (16) concurrent
threads, all on one pooled quota (the hottest case: every call moves the same counter):

- SQLite (a temporary file, WAL) and PostgreSQL (a temporary schema at
  ``VENDO_TEST_DATABASE_URL``, default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``):
  ``kernel.entitlements.consume`` with the ``sql`` counter store, against a bare conditional
  UPSERT (``INSERT ... ON CONFLICT DO UPDATE SET value = value + 1 WHERE value + 1 <= limit
  RETURNING value``) on a scratch table, one transaction per call, on the same engine;
- Redis (``--redis-url``, default ``redis://127.0.0.1:6379/13``, keys under a random prefix,
  deleted afterwards): ``consume`` with the ``redis`` store of vendo-counters-redis (the
  ledger entry still goes to SQL: PostgreSQL when reachable, else SQLite), against a bare Lua
  check-and-INCR script (EVALSHA) on the same server.

``check`` has its own benchmark, ``bench_check.py``.

Figures are calls per second over ``--seconds`` per row (best of ``--repeat``), with the
ratio of time per call to the baseline's. An engine that is unreachable is skipped with a
note. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

CATALOG = {
    "features": {"chat": {"kind": "metered", "period": "month"}},
    "plans": {"free": {"name": "Free", "default": True, "features": {"chat": 1_000_000_000_000}}},
}
SUBJECT = "ws_bench"
LIMIT = 1_000_000_000_000
UPSERT = ("INSERT INTO bench_scratch (key, value) VALUES ({p}, 1) ON CONFLICT (key) DO UPDATE "
          "SET value = bench_scratch.value + 1 WHERE bench_scratch.value + 1 <= {p} RETURNING value")
CHECK_AND_INCR = """
local value = tonumber(redis.call('GET', KEYS[1]) or '0')
if value + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return false end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""


def rate(call: Callable[[], Any], threads: int, seconds: float, repeat: int) -> float:
    """Best calls per second of ``call`` run by ``threads`` threads for ``seconds``."""
    best = 0.0
    for _ in range(repeat):
        counts = [0] * threads
        barrier = threading.Barrier(threads + 1)
        deadline = [0.0]

        def loop(index: int) -> None:
            barrier.wait()
            done = 0
            while time.perf_counter() < deadline[0]:
                call()
                done += 1
            counts[index] = done

        workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        started = time.perf_counter()
        deadline[0] = started + seconds
        barrier.wait()
        for worker in workers:
            worker.join()
        elapsed = max(time.perf_counter() - started, seconds)
        best = max(best, sum(counts) / elapsed)
    return best


def build_kernel(database_url: str, data_dir: Path, store: str = "sql", redis_url: str = "",
                 prefix: str = "", catalog: dict[str, Any] | None = None, plan: str = "free",
                 settings: dict[str, Any] | None = None) -> Any:
    """A kernel with only the built-in plugin (and the Redis store when asked), migrated,
    with the benchmark catalog (``catalog``, default :data:`CATALOG`) and its subject on
    ``plan``; ``settings``: more kernel setting overrides."""
    from vendo import Kernel, load_settings
    from vendo.db import migrations
    from vendo.entitlements.catalog import parse_catalog

    plugins: dict[str, Any] = {}
    overrides: dict[str, Any] = {"database_url": database_url, "data_dir": str(data_dir),
                                 "plugins": {"autoload": False}, **(settings or {})}
    plugin_settings = None
    if store == "redis":
        import vendo_counters_redis

        plugins["counters-redis"] = vendo_counters_redis
        overrides["providers"] = {"counters": "redis"}
        plugin_settings = {"counters-redis": {"url": redis_url, "key_prefix": prefix}}
    kernel = Kernel(load_settings(overrides=overrides, plugin_settings=plugin_settings), plugins=plugins).load()
    kernel.prepare_storage()
    migrations.upgrade(kernel)
    kernel.providers.configure(kernel.settings.providers)
    kernel.entitlements.load_catalog(parse_catalog(catalog or CATALOG))
    with kernel.session() as session:
        kernel.entitlements.assign(session, SUBJECT, plan)
    kernel.entitlements.maintain()
    return kernel


class Schema:
    """A temporary PostgreSQL schema, dropped with everything in it on exit."""

    def __init__(self, url: str) -> None:
        import sqlalchemy

        self.admin = sqlalchemy.create_engine(url)
        self.name = f"bench_{uuid.uuid4().hex[:10]}"
        self.url = url

    def __enter__(self) -> str:
        import sqlalchemy

        with self.admin.begin() as connection:
            connection.execute(sqlalchemy.text(f'CREATE SCHEMA "{self.name}"'))
        return f"{self.url}{'&' if '?' in self.url else '?'}options=-csearch_path%3D{self.name}"

    def __exit__(self, *exc: Any) -> None:
        import sqlalchemy

        with self.admin.begin() as connection:
            connection.execute(sqlalchemy.text(f'DROP SCHEMA "{self.name}" CASCADE'))
        self.admin.dispose()


def unreachable_postgres(url: str) -> str | None:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any driver or network failure
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def unreachable_redis(url: str) -> str | None:
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        client.ping()
        client.close()
        return None
    except Exception as exc:  # not installed, or not answering
        return f"{type(exc).__name__}: {exc}"


def sql_rows(kernel: Any, threads: list[int], seconds: float, repeat: int,
             alone: Any = None) -> list[tuple[str, int, float, float]]:
    """(case, threads, calls/s, baseline calls/s) of consume against the bare UPSERT; with
    ``alone`` (a kernel whose group commit is off), also its concurrent consumes (``1-by-1``)."""
    engine = kernel.engine
    placeholder = "?" if engine.dialect.name == "sqlite" else "%s"
    statement = UPSERT.format(p=placeholder)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS bench_scratch "
                                   "(key VARCHAR(255) PRIMARY KEY, value BIGINT NOT NULL)")

    def upsert() -> None:
        with engine.begin() as connection:
            connection.exec_driver_sql(statement, ("bench", LIMIT)).scalar()

    def consumer(on: Any) -> Callable[[], None]:
        def consume() -> None:
            if not on.entitlements.consume(SUBJECT, "chat").allowed:
                raise RuntimeError("the benchmark quota ran out")
        return consume

    rows = []
    for count in threads:
        baseline = rate(upsert, count, seconds, repeat)
        rows.append(("consume", count, rate(consumer(kernel), count, seconds, repeat), baseline))
        if alone is not None and count > 1:
            rows.append(("1-by-1", count, rate(consumer(alone), count, seconds, repeat), baseline))
    return rows


#: Kernel settings of the ``1-by-1`` rows: every consume in a transaction of its own.
NO_GROUP_COMMIT = {"entitlements": {"group_commit": 0}}


def redis_rows(kernel: Any, redis_url: str, prefix: str, threads: list[int], seconds: float,
               repeat: int) -> list[tuple[str, int, float, float]]:
    """consume with the Redis store against a bare Lua check-and-INCR."""
    import redis

    client = redis.Redis.from_url(redis_url)
    script = client.register_script(CHECK_AND_INCR)

    def lua() -> None:
        script(keys=[f"{prefix}raw"], args=[1, LIMIT])

    def consume() -> None:
        if not kernel.entitlements.consume(SUBJECT, "chat").allowed:
            raise RuntimeError("the benchmark quota ran out")

    rows = []
    try:
        for count in threads:
            baseline = rate(lua, count, seconds, repeat)
            rows.append(("consume", count, rate(consume, count, seconds, repeat), baseline))
    finally:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
        client.close()
    return rows


def print_rows(engine: str, baseline: str, rows: list[tuple[str, int, float, float]]) -> None:
    for case, count, calls, base in rows:
        print(f"{engine:<11} {case:<8} {count:>7} {calls:>12,.0f} {1e6 / calls:>9.0f} "
              f"{base:>14,.0f} {baseline:<26} {base / calls:>6.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fraction of a second per row (smoke test)")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per row and repeat (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats per row; the best is kept (default 3)")
    parser.add_argument("--threads", type=int, default=16, help="concurrent callers (default 16)")
    parser.add_argument("--postgres-url", default=os.environ.get(
        "VENDO_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    args = parser.parse_args(argv)
    seconds, repeat = (0.1, 1) if args.quick else (args.seconds, args.repeat)
    threads = [1, min(args.threads, 4) if args.quick else args.threads]

    import redis
    import sqlalchemy

    print(f"Python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, redis-py {redis.__version__}, "
          f"{os.cpu_count()} CPU(s); {seconds:g} s per row, best of {repeat}")
    header = (f"{'engine':<11} {'case':<8} {'threads':>7} {'calls/s':>12} {'us/call':>9} "
              f"{'baseline/s':>14} {'baseline':<26} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    notes = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        sqlite = build_kernel(f"sqlite:///{root / 'bench.db'}", root / "data")
        sqlite_alone = build_kernel(f"sqlite:///{root / 'alone.db'}", root / "data-alone", settings=NO_GROUP_COMMIT)
        print_rows("SQLite", "bare UPSERT", sql_rows(sqlite, threads, seconds, repeat, sqlite_alone))
        sqlite_alone.close()
        ledger_url = f"sqlite:///{root / 'ledger.db'}"
        schema = None
        problem = unreachable_postgres(args.postgres_url)
        if problem is None:
            schema = Schema(args.postgres_url)
            postgres_url = schema.__enter__()
            try:
                postgres = build_kernel(postgres_url, root / "data-pg")
                with Schema(args.postgres_url) as other:
                    alone = build_kernel(other, root / "data-pg-alone", settings=NO_GROUP_COMMIT)
                    print_rows("PostgreSQL", "bare UPSERT", sql_rows(postgres, threads, seconds, repeat, alone))
                    alone.close()
                postgres.close()
                with Schema(args.postgres_url) as second:
                    ledger_url = second
                    notes += redis_section(args, ledger_url, root, threads, seconds, repeat)
            finally:
                schema.__exit__(None, None, None)
        else:
            notes.append(f"PostgreSQL rows skipped: unreachable at {args.postgres_url} ({problem})")
            notes += redis_section(args, ledger_url, root, threads, seconds, repeat)
        sqlite.close()
    print("ratio = time per call / the baseline's time per call (higher is slower); "
          "consume writes a ledger entry and moves the counter in one transaction; concurrent consumes of "
          "one process share transactions (group commit), 1-by-1 = the same with group commit off")
    for note in notes:
        print(f"note: {note}")
    return 0


def redis_section(args: argparse.Namespace, ledger_url: str, root: Path, threads: list[int], seconds: float,
                  repeat: int) -> list[str]:
    """The Redis rows (ledger at ``ledger_url``); the notes to print."""
    problem = unreachable_redis(args.redis_url)
    if problem is not None:
        return [f"Redis rows skipped: unreachable at {args.redis_url} ({problem})"]
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    kernel = build_kernel(ledger_url, root / "data-redis", store="redis", redis_url=args.redis_url, prefix=prefix)
    try:
        ledger = "PostgreSQL" if ledger_url.startswith("postgresql") else "SQLite"
        print_rows("Redis", "bare Lua check-and-INCR", redis_rows(kernel, args.redis_url, prefix, threads, seconds,
                                                                  repeat))
    finally:
        kernel.close()
    return [f"Redis consume keeps its ledger in {ledger}"]


if __name__ == "__main__":
    sys.exit(main())
