"""Group commit: concurrent writers of one process share one transaction.

Every ``consume`` and ``track`` is a small write transaction (a ledger entry and a counter
UPSERT). Under concurrency most of its cost is the transaction itself: BEGIN, COMMIT (a WAL
flush on PostgreSQL), the session around them, and on SQLite the wait for the one writer.
:class:`GroupCommit` lets the threads that arrive while a transaction is running queue their
work; the next *leader* runs every queued piece of work, in arrival order, in one transaction,
and commits once. Each caller still returns only after the COMMIT that holds its write, so
durability is unchanged, and each piece of work sees the writes of those before it (a quota's
last unit still goes to exactly one caller).

When anything in a batch raises (or its COMMIT fails), the whole batch is rolled back and every
piece of work runs again alone, in a transaction of its own, so one caller's error is its own
and never another's (a transient error of its own, a deadlock with another process, runs it
again: :func:`vendo.db.run_transaction`). A lone caller pays one lock and one list append.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import Any, Callable, Generic, TypeVar

from vendo.db import run_transaction

T = TypeVar("T")

#: Pieces of work one transaction takes at most.
DEFAULT_MAX_BATCH = 64


class _Work(Generic[T]):
    __slots__ = ("run", "result", "error", "done", "ready")

    def __init__(self, run: Callable[[Any], T]) -> None:
        self.run = run
        self.result: T | None = None
        self.error: BaseException | None = None
        self.done = False
        #: Set when the work is done, or when its thread is to lead the next batch.
        self.ready = threading.Event()


class GroupCommit:
    """Runs ``work(session)`` callables in shared transactions opened by ``transaction()``.

    ``transaction`` is a context manager factory yielding a session in a transaction that
    commits on a clean exit and rolls back (undoing any side effects it knows of) when the
    block raises.
    """

    def __init__(self, transaction: Callable[[], AbstractContextManager[Any]], *,
                 max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self._transaction = transaction
        self._max_batch = max(1, int(max_batch))
        self._lock = threading.Lock()
        self._queue: list[_Work[Any]] = []
        self._leading = False
        #: Batches run and pieces of work they held (for tests and metrics).
        self.batches = 0
        self.grouped = 0

    def run(self, work: Callable[[Any], T]) -> T:
        """Run ``work(session)`` in a transaction, possibly shared with concurrent callers;
        return its result, or raise its error, once the transaction holding it committed."""
        item: _Work[T] = _Work(work)
        with self._lock:
            self._queue.append(item)
            lead = not self._leading
            self._leading = True
        while True:
            if not lead:
                item.ready.wait()
                if item.done:
                    break
            lead = False
            self._lead()
            if item.done:
                break
        if item.error is not None:
            raise item.error
        return item.result  # type: ignore[return-value]

    def _lead(self) -> None:
        """Take a batch from the queue, run it, then hand the lead to the first waiter."""
        with self._lock:
            batch = self._queue[:self._max_batch]
            del self._queue[:self._max_batch]
        try:
            self._run_batch(batch)
        finally:
            for item in batch:
                item.done = True
                item.ready.set()
            with self._lock:
                if self._queue:
                    self._queue[0].ready.set()  # that thread leads next
                else:
                    self._leading = False

    def _run_batch(self, batch: list[_Work[Any]]) -> None:
        if len(batch) > 1:
            self.batches += 1
            self.grouped += len(batch)
            try:
                with self._transaction() as session:
                    results = [item.run(session) for item in batch]
            except BaseException:
                pass  # rolled back: each piece of work runs again alone, below
            else:
                for item, result in zip(batch, results):
                    item.result = result
                return
        for item in batch:
            try:
                item.result = run_transaction(self._transaction, item.run)  # a deadlock: run again
            except BaseException as exc:  # the caller's own error, raised in its thread
                item.error = exc

