"""Billing webhook ingestion: ``kernel.billing.ingest`` (verify + store + apply) against a bare
insert of the same rows, on SQLite and PostgreSQL, in the same run.

Run: ``uv run python benchmarks/bench_webhook_ingest.py`` (``--quick`` for a smoke run).

Each engine gets a migrated kernel with the ``local`` billing provider (vendo-billing-local)
and a one-plan catalog. ``--events`` (2,000) signed deliveries are prepared beforehand, one
normalized ``subscription.updated`` each, over 50 subscriptions with a newer ``occurred_at``
and another seat count every time, so every event really moves a subscription: the
state machine locks it, updates it, re-assigns the entitlements and writes an outbox event
and an audit entry, all in the event's transaction, after the raw body was stored in a
transaction of its own. Rows, one caller, one event per delivery:

- **verify only**: ``provider.parse_webhook`` (HMAC-SHA256 check and JSON decoding);
- **bare insert**: the same rows (provider, event id, type, raw body, normalized JSON,
  timestamps, status) into a scratch table of the same shape, one transaction per row;
- **ingest**: the whole path, ``await kernel.billing.ingest("local", headers, body)``.

Figures are events per second (best of ``--repeat``, each on fresh event ids) and the ratio
of time per event to the bare insert's. PostgreSQL (``VENDO_TEST_DATABASE_URL``, default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``) runs in a temporary schema; when it is
unreachable its rows are skipped with a note. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

CATALOG = {
    "currency": "usd",
    "features": {"seats_used": {"kind": "limit"}},
    "plans": {
        "free": {"name": "Free", "default": True, "features": {"seats_used": 1}},
        "pro": {"name": "Pro", "prices": [{"interval": "month", "currency": "usd", "amount": "10"}],
                "features": {"seats_used": 100}},
    },
}
SUBSCRIPTIONS = 50
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
SCRATCH = """CREATE TABLE bench_events (
    id {pk}, provider VARCHAR(40) NOT NULL, event_id VARCHAR(255) NOT NULL, type VARCHAR(40) NOT NULL,
    body {blob} NOT NULL, event {json} NOT NULL, occurred_at {ts} NOT NULL, received_at {ts} NOT NULL,
    status VARCHAR(16) NOT NULL, attempts INTEGER NOT NULL, UNIQUE (provider, event_id))"""
INSERT = ("INSERT INTO bench_events (provider, event_id, type, body, event, occurred_at, received_at, status, "
          "attempts) VALUES (:provider, :event_id, :type, :body, :event, :occurred_at, :received_at, 'received', 0)")


def build_kernel(url: str, data_dir: Path) -> Any:
    """A migrated kernel with only the local billing provider and the benchmark catalog."""
    import vendo_billing_local
    from vendo import Kernel, load_settings
    from vendo.db import migrations
    from vendo.entitlements.catalog import parse_catalog

    settings = load_settings(overrides={
        "database_url": url, "data_dir": str(data_dir), "secret_key": "bench-webhook-ingest-secret-0123456789",
        "plugins": {"autoload": False}, "outbox": {"dispatch_in_server": False}, "log_level": "ERROR"})
    kernel = Kernel(settings, plugins={"billing-local": vendo_billing_local}, clock=lambda: NOW)
    kernel.load()
    kernel.prepare_storage()
    migrations.upgrade(kernel)
    kernel.providers.configure(kernel.settings.providers)
    kernel.entitlements.load_catalog(parse_catalog(CATALOG))
    return kernel


def deliveries(kernel: Any, count: int, start: int) -> list[tuple[dict[str, str], bytes]]:
    """``count`` signed bodies of one ``subscription.updated`` each, newer every time."""
    from vendo import BillingEvent
    from vendo.billing.machine import event_to_json

    provider = kernel.billing.provider("local")[1]
    run = uuid.uuid4().hex[:8]
    out = []
    for i in range(start, start + count):
        n = i % SUBSCRIPTIONS
        event = BillingEvent(id=f"evt_{run}_{i}", type="subscription.updated",
                             occurred_at=NOW - timedelta(days=1) + timedelta(milliseconds=i),
                             subject=f"ws_bench_{n}", customer_id=f"cus_{n}", subscription_id=f"sub_{n}", plan="pro",
                             status="active", seats=1 + i % 7, current_period_end=NOW + timedelta(days=30),
                             data={"interval": "month", "currency": "usd"})
        body = json.dumps({"events": [event_to_json(event)]}, sort_keys=True).encode()
        out.append((provider.sign(body), body))
    return out


def time_verify(kernel: Any, batch: list[tuple[dict[str, str], bytes]]) -> float:
    provider = kernel.billing.provider("local")[1]
    started = time.perf_counter()
    for headers, body in batch:
        provider.parse_webhook(headers, body)
    return time.perf_counter() - started


def time_bare_insert(kernel: Any, batch: list[tuple[dict[str, str], bytes]]) -> float:
    import sqlalchemy

    rows = []
    for _headers, body in batch:
        item = json.loads(body)["events"][0]
        rows.append({"provider": "local", "event_id": item["id"], "type": item["type"], "body": body,
                     "event": json.dumps(item), "occurred_at": datetime.fromisoformat(item["occurred_at"]),
                     "received_at": NOW})
    statement = sqlalchemy.text(INSERT)
    started = time.perf_counter()
    for row in rows:
        with kernel.engine.begin() as connection:
            connection.execute(statement, row)
    return time.perf_counter() - started


def time_ingest(kernel: Any, batch: list[tuple[dict[str, str], bytes]]) -> float:
    async def run() -> float:
        started = time.perf_counter()
        for headers, body in batch:
            await kernel.billing.ingest("local", headers, body)
        return time.perf_counter() - started

    return asyncio.run(run())


def scratch_table(kernel: Any) -> None:
    import sqlalchemy

    postgres = kernel.engine.dialect.name == "postgresql"
    ddl = SCRATCH.format(pk="BIGSERIAL PRIMARY KEY" if postgres else "INTEGER PRIMARY KEY",
                         blob="BYTEA" if postgres else "BLOB", json="JSON" if postgres else "TEXT",
                         ts="TIMESTAMPTZ" if postgres else "TIMESTAMP")
    with kernel.engine.begin() as connection:
        connection.execute(sqlalchemy.text(ddl))


def measure(name: str, kernel: Any, events: int, repeat: int) -> None:
    scratch_table(kernel)
    best = {"verify only": float("inf"), "bare insert": float("inf"), "ingest": float("inf")}
    warm = deliveries(kernel, min(events, 50), 10_000_000)
    time_ingest(kernel, warm)
    for attempt in range(repeat):
        batch = deliveries(kernel, events, attempt * events)
        best["verify only"] = min(best["verify only"], time_verify(kernel, batch))
        best["bare insert"] = min(best["bare insert"], time_bare_insert(kernel, batch))
        best["ingest"] = min(best["ingest"], time_ingest(kernel, batch))
    base = best["bare insert"] / events
    for case, elapsed in best.items():
        per = elapsed / events
        print(f"{name:<11} {case:<12} {events / elapsed:>12,.0f} {per * 1e6:>10,.0f} {per / base:>8.2f}")


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few events, one repeat (smoke test)")
    parser.add_argument("--events", type=int, default=2000, help="events per repeat (default 2,000)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats; the best is kept (default 3)")
    parser.add_argument("--postgres-url", default=os.environ.get(
        "VENDO_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args(argv)
    events, repeat = (40, 1) if args.quick else (args.events, args.repeat)

    import sqlalchemy

    print(f"Python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, {os.cpu_count()} CPU(s); "
          f"{events} events per repeat, best of {repeat}, one caller")
    header = f"{'engine':<11} {'case':<12} {'events/s':>12} {'us/event':>10} {'ratio':>8}"
    print(header)
    print("-" * len(header))
    notes = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        sqlite = build_kernel(f"sqlite:///{root / 'bench.db'}", root / "data")
        measure("SQLite", sqlite, events, repeat)
        sqlite.close()
        problem = unreachable_postgres(args.postgres_url)
        if problem is None:
            admin = sqlalchemy.create_engine(args.postgres_url)
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            with admin.begin() as connection:
                connection.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
            url = f"{args.postgres_url}{'&' if '?' in args.postgres_url else '?'}options=-csearch_path%3D{schema}"
            try:
                postgres = build_kernel(url, root / "data-pg")
                measure("PostgreSQL", postgres, events, repeat)
                postgres.close()
            finally:
                with admin.begin() as connection:
                    connection.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()
        else:
            notes.append(f"PostgreSQL rows skipped: unreachable at {args.postgres_url} ({problem})")
    print("ratio = time per event / the bare insert's (higher is slower); ingest = verify + store the raw body "
          "(one transaction) + apply (one transaction: subscription, entitlements, outbox, audit)")
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
