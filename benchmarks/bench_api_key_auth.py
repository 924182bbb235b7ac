"""API-key authentication per request, against a dict lookup and against JWT verification.

Run: ``uv run python benchmarks/bench_api_key_auth.py`` (``--quick`` for a smoke run).

For each database (SQLite in a temporary file; PostgreSQL at ``VENDO_TEST_DATABASE_URL``,
default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``, in a temporary schema, or
skipped with a note when unreachable), a kernel with the ``auth-apikeys`` plugin, one user,
one workspace and one key, then per request:

- ``dict lookup``: ``keys[token]``, a raw Python dict holding the same key (the baseline);
- ``API key, authenticate()``: the real authenticator as the kernel calls it, awaited in an
  event loop: header parsing, a worker-thread hop, one primary-key read joined to the
  creator's membership, ``kernel.secrets.keyed_hash`` and ``hmac.compare_digest``;
- ``API key, verify() in-thread``: the same without the thread hop (the synchronous core);
- ``API key, last_used_at written``: ``verify()`` on a kernel whose clock moves a minute per
  call, so every request also writes ``last_used_at`` (what the once-a-minute throttle saves);
- ``JWT, verify_access()``: ``kernel.sessions.verify_access(token)`` on an access token
  (HS256 signature and claims; no database).

Each figure is the best of ``--repeat`` repeats (``time.perf_counter``), in calls per second
and microseconds per call, with its ratio to the dict lookup measured in the same run.
Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from itertools import count
from pathlib import Path
from typing import Any, Callable

SECRET_KEY = "benchmark-master-secret-0123456789abcdefghij"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def make_request(headers: dict[str, str]) -> Any:
    """A Starlette request as an authenticator receives it in the app."""
    from starlette.requests import Request

    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/api/v1/me", "headers": raw, "query_string": b""})


def build_kernel(database_url: str, data_dir: Path, clock: Callable[[], datetime] | None = None) -> Any:
    """A migrated kernel holding only the built-in ``core`` and ``auth-apikeys``."""
    import vendo_auth_apikeys
    from vendo import Kernel, load_settings
    from vendo.db import migrations

    settings = load_settings(overrides={
        "data_dir": str(data_dir), "database_url": database_url, "secret_key": SECRET_KEY,
        "plugins": {"autoload": False, "strict": True}, "outbox": {"dispatch_in_server": False},
    })
    kernel = Kernel(settings, plugins={"auth-apikeys": vendo_auth_apikeys}, clock=clock).load()
    kernel.prepare_storage()
    migrations.upgrade(kernel)
    kernel.providers.configure(kernel.settings.providers)
    return kernel


def seed(kernel: Any, email: str) -> tuple[str, str]:
    """A user, a key of their personal workspace and an access token: ``(api key, jwt)``."""
    service = kernel.providers.get("auth", "api_key").service
    with kernel.session() as session:
        user = kernel.identity.create_user(session, email)
        workspace = kernel.identity.memberships(session, user.id)[0]["id"]
        _row, key = service.issue(session, workspace_id=workspace, created_by=user.id, name="bench",
                                  scopes=["notes:read"], environment="live", rate_limit_tier="standard")
        token = kernel.sessions.issue(session, user.id, "bench").access_token
    return key, token


def best(run: Callable[[int], None], quick: bool, repeat: int, slow: bool) -> float:
    """Best seconds per call of ``run(n)`` (which makes ``n`` calls) over ``repeat`` runs."""
    if quick:
        number, repeat = (5 if slow else 200), 1
    else:
        number = 1
        while True:  # enough calls for >= 0.2 s per repeat, as timeit.autorange does
            started = time.perf_counter()
            run(number)
            if time.perf_counter() - started >= 0.2:
                break
            number *= 2
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run(number)
        times.append((time.perf_counter() - started) / number)
    return min(times)


def postgres_url(wanted: str) -> tuple[str | None, str]:
    """``(url, "")`` when PostgreSQL answers, else ``(None, why not)``."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(wanted)
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
        return wanted, ""
    except Exception as exc:  # any driver or network failure means "not reachable"
        return None, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


class Schema:
    """A temporary PostgreSQL schema, dropped with everything in it on exit."""

    def __init__(self, url: str) -> None:
        import sqlalchemy

        self.name = f"bench_{uuid.uuid4().hex[:10]}"
        self.admin = sqlalchemy.create_engine(url)
        self.url = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{self.name}"

    def __enter__(self) -> str:
        import sqlalchemy

        with self.admin.begin() as connection:
            connection.execute(sqlalchemy.text(f'CREATE SCHEMA "{self.name}"'))
        return self.url

    def __exit__(self, *exc: Any) -> None:
        import sqlalchemy

        with self.admin.begin() as connection:
            connection.execute(sqlalchemy.text(f'DROP SCHEMA "{self.name}" CASCADE'))
        self.admin.dispose()


def measure_backend(database_url: str, data_dir: Path, quick: bool, repeat: int) -> list[tuple[str, float]]:
    """Rows ``(case, seconds per call)`` for one database."""
    kernel = build_kernel(database_url, data_dir)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    minutes = count()
    moving = build_kernel(database_url, data_dir, clock=lambda: start + timedelta(minutes=next(minutes)))
    try:
        key, jwt = seed(kernel, "bench@example.com")
        busy_key, _ = seed(moving, "busy@example.com")
        authenticator = kernel.providers.get("auth", "api_key")
        request = make_request({"Authorization": f"Bearer {key}"})
        table = {key: authenticator.authenticate_sync(request)}  # also warms the path up (and writes last_used_at)
        busy = moving.providers.get("auth", "api_key").service
        kernel.sessions.verify_access(jwt)
        loop = asyncio.new_event_loop()

        def dict_lookup(n: int) -> None:
            for _ in range(n):
                table[key]

        async def awaited(n: int) -> None:
            for _ in range(n):
                await authenticator.authenticate(request)

        def authenticate(n: int) -> None:
            loop.run_until_complete(awaited(n))

        def verify(n: int) -> None:
            for _ in range(n):
                authenticator.authenticate_sync(request)

        def verify_writing(n: int) -> None:
            for _ in range(n):
                busy.verify(busy_key)

        def verify_jwt(n: int) -> None:
            for _ in range(n):
                kernel.sessions.verify_access(jwt)

        loop.run_until_complete(awaited(3))  # start the worker threads before timing
        rows = [
            ("dict lookup (baseline)", best(dict_lookup, quick, repeat, slow=False)),
            ("API key, authenticate()", best(authenticate, quick, repeat, slow=True)),
            ("API key, verify() in-thread", best(verify, quick, repeat, slow=True)),
            ("API key, last_used_at written", best(verify_writing, quick, repeat, slow=True)),
            ("JWT, verify_access()", best(verify_jwt, quick, repeat, slow=False)),
        ]
        loop.close()
        return rows
    finally:
        kernel.close()
        moving.close()


def print_rows(backend: str, rows: list[tuple[str, float]]) -> None:
    baseline = rows[0][1]
    jwt = dict(rows)["JWT, verify_access()"]
    print(f"\n{backend}")
    print("| case | calls/s | us/call | ratio vs dict | ratio vs JWT |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for case, seconds in rows:
        print(f"| {case} | {1 / seconds:,.0f} | {seconds * 1e6:,.3f} | {seconds / baseline:,.1f} | "
              f"{seconds / jwt:,.2f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny number of iterations (smoke test)")
    parser.add_argument("--repeat", type=int, default=5, help="repeats per figure; the best is kept (default 5)")
    parser.add_argument("--postgres-url", default=os.environ.get("VENDO_TEST_DATABASE_URL", DEFAULT_PG),
                        help="PostgreSQL server (a temporary schema is created and dropped)")
    args = parser.parse_args(argv)

    import fastapi
    import sqlalchemy

    print(f"bench_api_key_auth: Python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, "
          f"FastAPI {fastapi.__version__}, {os.cpu_count()} CPU(s){', --quick: figures meaningless' if args.quick else ''}")
    print("ratio vs dict = time per call / time of a dict lookup of the same key, measured in the same run; "
          "ratio vs JWT = time per call / kernel.sessions.verify_access")

    with tempfile.TemporaryDirectory(prefix="vendo-bench-apikeys-") as scratch:
        sqlite_url = f"sqlite:///{Path(scratch) / 'bench.db'}"
        print_rows("SQLite (file, WAL)", measure_backend(sqlite_url, Path(scratch) / "data", args.quick, args.repeat))

        url, problem = postgres_url(args.postgres_url)
        if url is None:
            print(f"\nPostgreSQL: skipped, unreachable at {args.postgres_url} ({problem})")
        else:
            with Schema(url) as schema_url:
                rows = measure_backend(schema_url, Path(scratch) / "data-pg", args.quick, args.repeat)
            print_rows("PostgreSQL (psycopg 3, loopback TCP)", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
