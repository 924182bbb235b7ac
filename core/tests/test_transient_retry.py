"""A transaction PostgreSQL aborts as a deadlock victim runs again (vendo.db.run_transaction),
as the entitlements' writes do: two real transactions lock two rows in opposite orders."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from vendo.db import is_transient, run_transaction
from vendo_sdk.pytest_plugin import postgres_schema, require_postgres


@pytest.fixture
def engine() -> Any:
    require_postgres()
    with postgres_schema() as url:
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE pair (id int PRIMARY KEY, value int NOT NULL)"))
            connection.execute(text("INSERT INTO pair VALUES (1, 0), (2, 0)"))
        yield engine
        engine.dispose()


def test_a_deadlock_victim_runs_again_and_both_writes_land(engine: Any) -> None:
    sessions = sessionmaker(engine)
    both_locked = threading.Barrier(2, timeout=10)
    attempts: dict[str, int] = {"a": 0, "b": 0}
    errors: list[BaseException] = []

    def transaction() -> Any:
        return sessions.begin()

    def writer(name: str, first: int, second: int) -> None:
        def work(session: Any) -> None:
            attempts[name] += 1
            session.execute(text("UPDATE pair SET value = value + 1 WHERE id = :id"), {"id": first})
            if attempts[name] == 1:
                both_locked.wait()  # each holds its first row: the second updates deadlock
            session.execute(text("UPDATE pair SET value = value + 10 WHERE id = :id"), {"id": second})

        try:
            run_transaction(transaction, work)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=("a", 1, 2)), threading.Thread(target=writer, args=("b", 2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(attempts.values()) == [1, 2]  # PostgreSQL aborted one; it ran again
    with engine.connect() as connection:
        assert dict(connection.execute(text("SELECT id, value FROM pair")).all()) == {1: 11, 2: 11}


def test_other_errors_are_not_run_again(engine: Any) -> None:
    sessions = sessionmaker(engine)
    runs = []

    def work(session: Any) -> None:
        runs.append(1)
        session.execute(text("INSERT INTO pair VALUES (1, 5)"))

    with pytest.raises(IntegrityError) as caught:
        run_transaction(sessions.begin, work)
    assert runs == [1] and not is_transient(caught.value)
