"""Group commit: concurrent consume/track calls of one process share a transaction, each caller
answered after the commit holding its write, one caller's error never another's. The mechanism
alone (deterministic batches), then the kernel on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

from vendo import InvalidInput
from vendo.entitlements.catalog import load_catalog
from vendo.entitlements.groupcommit import GroupCommit
from vendo.entitlements.models import Counter, LedgerEntry

CATALOGS = Path(__file__).resolve().parents[2] / "examples" / "catalogs"


class Journal:
    """Transactions as lists of writes: ``committed`` holds those whose block ended cleanly."""

    def __init__(self) -> None:
        self.committed: list[list[str]] = []
        self.rolled_back: list[list[str]] = []

    @contextmanager
    def transaction(self) -> Iterator[list[str]]:
        writes: list[str] = []
        try:
            yield writes
        except BaseException:
            self.rolled_back.append(writes)
            raise
        self.committed.append(writes)


def queued_behind_a_slow_leader(group: GroupCommit, works: list[Any]) -> tuple[list[Any], list[BaseException | None]]:
    """Run ``works`` in threads while a first caller's work is still running, so that they
    queue and form the next batch; return each one's result and error."""
    release = threading.Event()

    def slow(writes: list[str]) -> str:
        writes.append("slow")
        release.wait(10)
        return "slow"

    leader = threading.Thread(target=group.run, args=(slow,))
    leader.start()
    while not group._leading:
        time.sleep(0.001)
    results: list[Any] = [None] * len(works)
    errors: list[BaseException | None] = [None] * len(works)

    def call(index: int) -> None:
        try:
            results[index] = group.run(works[index])
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            errors[index] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(works))]
    for thread in threads:
        thread.start()
    while len(group._queue) < len(works):
        time.sleep(0.001)
    release.set()
    for thread in [leader, *threads]:
        thread.join(10)
    return results, errors


def writer(name: str) -> Any:
    def work(writes: list[str]) -> str:
        writes.append(name)
        return f"done {name}"
    return work


def test_callers_that_queue_share_one_transaction_and_each_gets_its_own_answer() -> None:
    journal = Journal()
    group = GroupCommit(journal.transaction)
    results, errors = queued_behind_a_slow_leader(group, [writer(n) for n in "abcd"])
    assert results == ["done a", "done b", "done c", "done d"] and errors == [None] * 4
    assert journal.committed[0] == ["slow"]
    assert sorted(journal.committed[1]) == ["a", "b", "c", "d"] and len(journal.committed) == 2
    assert (group.batches, group.grouped) == (1, 4)


def test_an_error_in_a_batch_is_only_its_callers_and_the_others_commit_alone() -> None:
    journal = Journal()
    group = GroupCommit(journal.transaction)

    def failing(writes: list[str]) -> str:
        writes.append("bad")
        raise InvalidInput("bad input", code="bad")

    results, errors = queued_behind_a_slow_leader(group, [writer("a"), failing, writer("c")])
    assert results[0] == "done a" and results[2] == "done c" and results[1] is None
    assert isinstance(errors[1], InvalidInput) and errors[0] is None and errors[2] is None
    assert len(journal.rolled_back) == 2  # the shared attempt, then the failing caller alone
    assert ["a"] in journal.committed and ["c"] in journal.committed
    assert not any("bad" in writes for writes in journal.committed)  # nothing of it was kept


def test_batches_are_capped() -> None:
    journal = Journal()
    group = GroupCommit(journal.transaction, max_batch=2)
    results, errors = queued_behind_a_slow_leader(group, [writer(n) for n in "abcde"])
    assert errors == [None] * 5 and sorted(results) == [f"done {n}" for n in "abcde"]
    assert [len(writes) for writes in journal.committed] == [1, 2, 2, 1]


def test_a_lone_caller_has_its_own_transaction() -> None:
    journal = Journal()
    group = GroupCommit(journal.transaction)
    assert group.run(writer("a")) == "done a"
    assert journal.committed == [["a"]] and group.batches == 0


@pytest.fixture
def memento(migrated_kernel, vendo_clock):
    kernel = migrated_kernel(clock=vendo_clock)
    kernel.providers.configure({})
    kernel.entitlements.load_catalog(load_catalog(CATALOGS / "memento.toml"))
    return kernel


def pro_workspace(kernel) -> tuple[str, str]:
    with kernel.session() as session:
        owner = kernel.identity.create_user(session, "owner@example.com").id
        team = kernel.identity.create_workspace(session, owner, "Team").id
        kernel.entitlements.assign(session, team, "pro")  # reformulate: 50 a month
    return team, owner


def test_grouped_consumes_never_overspend_or_double_count(memento) -> None:
    """16 threads, each idempotency key sent by two of them, against a quota of 50: exactly 50
    keys accepted, each once in the ledger, the counter equal to the ledger, and batches formed."""
    team, owner = pro_workspace(memento)
    answers: dict[str, list[bool]] = {}
    lock = threading.Lock()
    start = threading.Barrier(16)

    def worker(index: int) -> None:
        start.wait()
        for attempt in range(8):
            key = f"k{index % 8}-{attempt}"
            decision = memento.entitlements.consume(team, "reformulate", member=owner, idempotency_key=key)
            with lock:
                answers.setdefault(key, []).append(decision.allowed)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    accepted = {key for key, allowed in answers.items() if any(allowed)}
    assert len(answers) == 64 and len(accepted) == 50
    assert all(allowed == [True, True] for key, allowed in answers.items() if key in accepted)
    with memento.session() as session:
        keys = [e.idempotency_key for e in session.query(LedgerEntry).filter_by(feature="reformulate", kind="consume")]
        counter = session.query(Counter).filter(Counter.key.like(f"{team}:reformulate:%")).one()
    assert sorted(keys) == sorted(accepted) and counter.value == 50
    assert memento.entitlements._group.grouped > 0  # the calls did share transactions


def test_a_bad_call_among_grouped_ones_fails_alone(memento) -> None:
    """One thread keeps consuming a boolean feature (422 not_countable) while 7 others consume:
    it gets its error every time, the others are all counted."""
    team, owner = pro_workspace(memento)
    errors: list[str] = []
    allowed: list[bool] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        for attempt in range(6):
            if index == 0:
                try:
                    memento.entitlements.consume(team, "brainstorm", member=owner)
                except InvalidInput as exc:
                    with lock:
                        errors.append(exc.code)
                continue
            decision = memento.entitlements.consume(team, "chat", member=owner, idempotency_key=f"{index}-{attempt}")
            with lock:
                allowed.append(decision.allowed)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == ["not_countable"] * 6 and allowed == [True] * 42
    assert memento.entitlements.check(team, "chat", member=owner).used == 42


def test_group_commit_can_be_turned_off(make_kernel) -> None:
    kernel = make_kernel(entitlements={"group_commit": 0})
    assert kernel.entitlements._group is None
