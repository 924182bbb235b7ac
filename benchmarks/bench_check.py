"""``check`` with a cached plan against a plain dict lookup, measured in the same run.

Run: ``uv run python benchmarks/bench_check.py`` (``--quick`` for a smoke run).

One subject (a workspace on the ``pro`` plan) and two features: a boolean one (``export``)
and a metered one (``chat``, a monthly quota). For each engine, one caller:

- **dict lookup** (the baseline): ``entitlements[subject][feature]`` in a plain dict of dicts,
  what an application that hard-coded its plans would do;
- **check, boolean, cached plan**: ``kernel.entitlements.check(subject, "export")`` with the
  plan cache on (``[entitlements] plan_cache_ttl``, default 1 s): no database at all;
- **check, metered, cached plan**: ``check(subject, "chat")``: the plan from the cache, the
  counter read from the store (counters are never cached: one primary-key read on SQL, one
  ``GET`` on Redis);
- the same two with the cache off (``plan_cache_ttl = 0``, how every check ran before the
  cache): the subject's assignment read from the database on every call.

Each row is timed with :mod:`timeit` (garbage collection off while timing), best of
``--repeat`` runs of about ``--seconds``; the baseline goes through the same loop and function
call as the checks.

Engines: SQLite (a temporary file, WAL), PostgreSQL (a temporary schema at
``VENDO_TEST_DATABASE_URL``, default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``,
dropped afterwards) and the ``redis`` store of vendo-counters-redis (``--redis-url``, keys
under a random prefix, deleted afterwards; its assignments in SQLite). Unreachable engines
are skipped with a note. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import timeit
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_consume import Schema, build_kernel, unreachable_postgres, unreachable_redis  # noqa: E402

CATALOG = {
    "features": {"chat": {"kind": "metered", "period": "month"}, "export": {"kind": "boolean"}},
    "plans": {
        "free": {"name": "Free", "default": True, "features": {"chat": 10}},
        "pro": {"name": "Pro", "features": {"chat": 1_000_000, "export": True}},
    },
}
SUBJECT = "ws_bench"


def kernels(url: str, root: Path, label: str, **options: Any) -> tuple[Any, Any]:
    """Two kernels on one database: plan cache on (the default TTL) and off."""
    cached = build_kernel(url, root / f"data-{label}", catalog=CATALOG, plan="pro", **options)
    uncached = build_kernel(url, root / f"data-{label}", catalog=CATALOG, plan="pro",
                            settings={"entitlements": {"plan_cache_ttl": 0}}, **options)
    return cached, uncached


def rate(call: Any, seconds: float, repeat: int) -> float:
    """Best calls per second of ``call`` over ``repeat`` timeit runs of about ``seconds`` each
    (the same loop for every row, so the baseline is not drowned in the harness's cost)."""
    timer = timeit.Timer(call)
    number = 1
    while True:  # calibrate: enough calls for about a tenth of ``seconds``
        elapsed = timer.timeit(number)
        if elapsed >= seconds / 10 or number >= 10_000_000:
            break
        number *= 10 if elapsed < seconds / 100 else 2
    number = max(1, int(number * seconds / max(elapsed, 1e-9)))
    return number / min(timer.repeat(repeat, number))


def rows(cached: Any, uncached: Any, seconds: float, repeat: int) -> list[tuple[str, float]]:
    """(case, calls/s), the dict lookup first."""
    table = {SUBJECT: {"chat": 1_000_000, "export": True}, "ws_other": {"chat": 10, "export": False}}

    def lookup() -> None:
        table[SUBJECT]["export"]

    def check(kernel: Any, feature: str) -> Any:
        def call() -> None:
            if not kernel.entitlements.check(SUBJECT, feature).allowed:
                raise RuntimeError(f"{feature} refused: the benchmark plan is wrong")
        call()  # warm: catalog parsed, statements compiled, plan cached
        return call

    found = [("dict lookup", rate(lookup, seconds, repeat))]
    for label, kernel in (("cached plan", cached), ("no plan cache", uncached)):
        for kind, feature in (("boolean", "export"), ("metered", "chat")):
            found.append((f"check, {kind}, {label}", rate(check(kernel, feature), seconds, repeat)))
    return found


def show(engine: str, found: list[tuple[str, float]]) -> None:
    base = found[0][1]
    for case, calls in found:
        print(f"{engine:<10} {case:<31} {calls:>12,.0f} {1e6 / calls:>10.2f} {base / calls:>9,.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fraction of a second per row (smoke test)")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per row and repeat (default 1)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats per row; the best is kept (default 3)")
    parser.add_argument("--postgres-url", default=os.environ.get(
        "VENDO_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    args = parser.parse_args(argv)
    seconds, repeat = (0.05, 1) if args.quick else (args.seconds, args.repeat)

    import sqlalchemy

    print(f"Python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, {os.cpu_count()} CPU(s); "
          f"{seconds:g} s per row, best of {repeat}, one caller")
    header = f"{'engine':<10} {'case':<31} {'calls/s':>12} {'us/call':>10} {'ratio':>9}"
    print(header)
    print("-" * len(header))
    notes = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        made = kernels(f"sqlite:///{root / 'bench.db'}", root, "sqlite")
        show("SQLite", rows(*made, seconds, repeat))
        for kernel in made:
            kernel.close()
        problem = unreachable_postgres(args.postgres_url)
        if problem is None:
            with Schema(args.postgres_url) as url:
                made = kernels(url, root, "pg")
                show("PostgreSQL", rows(*made, seconds, repeat))
                for kernel in made:
                    kernel.close()
        else:
            notes.append(f"PostgreSQL rows skipped: unreachable at {args.postgres_url} ({problem})")
        problem = unreachable_redis(args.redis_url)
        if problem is None:
            prefix = f"bench-{uuid.uuid4().hex[:8]}:"
            made = kernels(f"sqlite:///{root / 'redis-ledger.db'}", root, "redis", store="redis",
                           redis_url=args.redis_url, prefix=prefix)
            try:
                show("Redis", rows(*made, seconds, repeat))
            finally:
                import redis

                client = redis.Redis.from_url(args.redis_url)
                for key in client.scan_iter(match=f"{prefix}*", count=1000):
                    client.delete(key)
                client.close()
                for kernel in made:
                    kernel.close()
            notes.append("Redis rows: counters in Redis, assignments in SQLite")
        else:
            notes.append(f"Redis rows skipped: unreachable at {args.redis_url} ({problem})")
    print("ratio = time per call / the dict lookup's time per call (higher is slower)")
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
