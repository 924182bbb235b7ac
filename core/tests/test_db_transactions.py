"""Transactions and pooled connections: SQLite writers queued in the process, read-only
sessions that do not wait for writers, and server connections pinged only after idling."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

import vendo.db


def test_sqlite_writers_of_one_process_take_turns(migrated_kernel, database_url) -> None:
    kernel = migrated_kernel()
    with kernel.engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE tally (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        connection.exec_driver_sql("INSERT INTO tally VALUES (1, 0)")
    errors: list[BaseException] = []
    lock = " FOR UPDATE" if database_url.startswith("postgresql") else ""  # SQLite: BEGIN IMMEDIATE

    def writer() -> None:
        try:
            for _ in range(40):
                with kernel.session() as session:
                    n = session.execute(text("SELECT n FROM tally WHERE id = 1" + lock)).scalar()
                    session.execute(text("UPDATE tally SET n = :n WHERE id = 1"), {"n": n + 1})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with kernel.session(read_only=True) as session:  # read-modify-write never lost an update
        assert session.execute(text("SELECT n FROM tally WHERE id = 1")).scalar() == 320


def test_a_read_only_session_does_not_wait_for_a_writer(migrated_kernel, database_url) -> None:
    kernel = migrated_kernel()
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with kernel.session() as session:
            session.execute(text("UPDATE vendo_plan_assignments SET seats = seats WHERE 1 = 0"))
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        with kernel.session(read_only=True) as session:
            assert session.execute(text("SELECT count(*) FROM vendo_plan_assignments")).scalar() == 0
        assert time.monotonic() - started < 2  # a writing session would wait for the writer here (SQLite)
    finally:
        release.set()
        thread.join()


def test_an_idle_server_connection_is_pinged_and_replaced_when_dead(migrated_kernel, database_url,
                                                                    monkeypatch) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server connection to lose")
    kernel = migrated_kernel()
    with kernel.engine.connect() as connection:
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    with vendo.db.make_engine(database_url).connect() as admin:  # what a server restart does to it
        admin.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
        admin.commit()
    monkeypatch.setattr(vendo.db, "PING_AFTER_IDLE", 0.0)
    with kernel.engine.connect() as connection:  # the same pooled connection, pinged, then replaced
        assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar() != pid
