"""Group commit for the AI service's metering writes (admission holds and settlements).

Each AI call writes twice: its holds before the vendor is called, their settlement after. On
their own, each write is a transaction of its own in a worker thread: a thread hop, BEGIN,
COMMIT, a session around them, and on SQLite the wait for the one writer of the process, which
under concurrency cost more than the statements. :class:`MeterWriter` queues the writes that
arrive on an event loop while a batch is running; the next batch runs every queued write, in
arrival order, in one transaction on one worker thread, and commits once.

- **Durability is unchanged**: a caller gets its result only after the COMMIT that holds its
  write.
- **Each write is its own**: a write runs in a SAVEPOINT. One that raises a Vendo error (a
  refusal, an unknown model...) is rolled back alone, with the counter-store moves it made
  outside the database (:func:`vendo.on_rollback`), and the error goes to its caller only. Any
  other error (the database failing, a deadlock), or a failed COMMIT, rolls the whole batch
  back; every write of the batch then runs again alone, in a transaction of its own.
- **Writes that clean up after themselves** (``savepoint=False``) skip the SAVEPOINT (two
  statements and the ORM's bookkeeping per write): such a write promises that a Vendo error it
  raises left nothing behind. One that cannot keep the promise (it failed after writing)
  raises :class:`Unclean` around the error instead: the batch then runs again write by write,
  and its caller gets the error itself.
- **Ordering**: a write sees the writes queued before it (a quota's last unit goes to exactly
  one caller).
- **Abandoned callers**: a caller cancelled while its write is queued or running (the client
  went away) does not lose what the write did: its ``orphan`` callback gets the result (the
  AI service releases the holds of an admission nobody will use).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Generic, TypeVar

from starlette.concurrency import run_in_threadpool

from vendo.capabilities import COMPENSATIONS
from vendo.errors import VendoError

if TYPE_CHECKING:  # pragma: no cover
    from vendo.kernel import Kernel

log = logging.getLogger("vendo.ai")

T = TypeVar("T")

#: Writes one transaction takes at most.
MAX_BATCH = 64


@dataclass
class _Write(Generic[T]):
    work: Callable[[Any], T]
    future: asyncio.Future[T]
    orphan: Callable[[T], None] | None
    savepoint: bool = True
    ok: bool = False
    value: Any = None


@dataclass
class _Queue:
    items: list[_Write[Any]] = field(default_factory=list)
    draining: bool = False


class _Rerun(Exception):
    """The batch must run again write by write."""


class Unclean(Exception):
    """Raised by a write run with ``savepoint=False`` that failed after writing: ``error`` (a
    Vendo error) goes to its caller once the write ran again alone and rolled back."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _compensate(undo: list[Callable[[], None]]) -> None:
    while undo:
        action = undo.pop()
        try:
            action()
        except Exception:
            log.error("could not undo a counter move of a rolled-back AI write", exc_info=True)


class MeterWriter:
    """Runs ``work(session)`` callables in shared transactions (see the module docstring)."""

    def __init__(self, kernel: Kernel, *, max_batch: int = MAX_BATCH) -> None:
        self._kernel = kernel
        self._max_batch = max(1, max_batch)
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = weakref.WeakKeyDictionary()
        #: Batches run, and writes they held (for tests and metrics).
        self.batches = 0
        self.writes = 0

    async def run(self, work: Callable[[Any], T], *, orphan: Callable[[T], None] | None = None,
                  savepoint: bool = True) -> T:
        """Run ``work(session)`` in a transaction, maybe shared with other writes; return its
        result, or raise its error, once that transaction committed. ``savepoint=False``: the
        write leaves nothing behind when it raises a Vendo error, else raises :class:`Unclean`
        (see the module docstring)."""
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Queue()
        write: _Write[T] = _Write(work, loop.create_future(), orphan, savepoint)
        queue.items.append(write)
        if not queue.draining:
            queue.draining = True
            loop.create_task(self._drain(queue))
        try:
            return await asyncio.shield(write.future)
        except asyncio.CancelledError:
            # The caller went away; the write runs (or ran) anyway: its orphan callback settles it.
            write.future.add_done_callback(lambda f: self._orphaned(write))
            raise

    def _orphaned(self, write: _Write[Any]) -> None:
        if write.orphan is None or write.future.cancelled() or write.future.exception() is not None:
            return
        try:
            write.orphan(write.future.result())
        except Exception:
            log.error("could not settle the write of a cancelled AI call", exc_info=True)

    async def _drain(self, queue: _Queue) -> None:
        try:
            while queue.items:
                batch, queue.items[:] = queue.items[:self._max_batch], queue.items[self._max_batch:]
                try:
                    await run_in_threadpool(self._run, batch)
                except BaseException as exc:  # noqa: BLE001 - delivered to every caller of the batch
                    for write in batch:
                        if write.future.done():
                            continue
                        if isinstance(exc, asyncio.CancelledError):
                            write.future.cancel()
                        else:
                            write.future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for write in batch:
                    if write.future.done():
                        continue
                    if write.ok:
                        write.future.set_result(write.value)
                    else:
                        write.future.set_exception(write.value)
        finally:
            queue.draining = False

    # -- in the worker thread ---------------------------------------------------------------------

    def _run(self, batch: list[_Write[Any]]) -> None:
        self.batches += 1
        self.writes += len(batch)
        if len(batch) == 1:
            self._alone(batch[0])
            return
        try:
            self._together(batch)
        except _Rerun:
            for write in batch:
                self._alone(write)

    def _together(self, batch: list[_Write[Any]]) -> None:
        kept: list[Callable[[], None]] = []
        try:
            with self._kernel.session() as session:
                for write in batch:
                    own: list[Callable[[], None]] = []
                    session.info[COMPENSATIONS] = own
                    if not write.savepoint:
                        try:
                            write.value = write.work(session)
                            write.ok = True
                        except VendoError as exc:  # nothing written, by the write's promise
                            _compensate(own)
                            write.ok, write.value = False, exc
                            continue
                        except Exception as exc:
                            _compensate(own)
                            raise _Rerun from exc
                        kept.extend(own)
                        continue
                    savepoint = session.begin_nested()
                    try:
                        write.value = write.work(session)
                        write.ok = True
                    except VendoError as exc:
                        savepoint.rollback()
                        _compensate(own)
                        write.ok, write.value = False, exc
                        continue
                    except Exception as exc:
                        if savepoint.is_active:
                            savepoint.rollback()
                        _compensate(own)
                        raise _Rerun from exc
                    savepoint.commit()
                    kept.extend(own)
                session.info[COMPENSATIONS] = kept
        except _Rerun:
            _compensate(kept)
            raise
        except Exception as exc:  # the COMMIT failed: nothing of the batch was written
            _compensate(kept)
            raise _Rerun from exc

    def _alone(self, write: _Write[Any]) -> None:
        undo: list[Callable[[], None]] = []
        try:
            with self._kernel.session() as session:
                session.info[COMPENSATIONS] = undo
                value = write.work(session)
        except Exception as exc:
            _compensate(undo)
            write.ok, write.value = False, exc.error if isinstance(exc, Unclean) else exc
            return
        write.ok, write.value = True, value
