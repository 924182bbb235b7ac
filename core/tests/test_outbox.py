"""The transactional outbox: what publishers and subscribing plugins can rely on.

Every test runs on SQLite and on PostgreSQL (the ``database_url`` fixture). Time is a
fake clock assigned to ``kernel.clock``, so retries, backoff and leases are driven by
advancing it, never by sleeping.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from sqlalchemy import func, select

from vendo import Event, InvalidInput, NotFound, hookimpl
from vendo.kernel import Kernel
from vendo.outbox import OutboxDelivery, OutboxEvent


class FakeClock:
    """An aware UTC clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Recorder:
    """A synchronous subscriber (decorated, as plugin authors write it) that records events."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    @hookimpl
    def vendo_on_event(self, event: Event, kernel: Kernel) -> None:
        self.events.append(event)


class AsyncRecorder:
    """An async subscriber; it records only once its coroutine actually runs to the end."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def vendo_on_event(self, event: Event, kernel: Kernel) -> None:
        await asyncio.sleep(0)
        self.events.append(event)


class Flaky:
    """Fails its first ``failures`` calls (sync or async), then succeeds."""

    def __init__(self, failures: int, message: str = "payment provider down") -> None:
        self.failures = failures
        self.message = message
        self.calls: list[Event] = []
        self.delivered: list[Event] = []

    def _handle(self, event: Event) -> None:
        self.calls.append(event)
        if len(self.calls) <= self.failures:
            raise RuntimeError(f"{self.message} (call {len(self.calls)})")
        self.delivered.append(event)

    def vendo_on_event(self, event: Event, kernel: Kernel) -> None:
        self._handle(event)


class AsyncFlaky(Flaky):
    async def vendo_on_event(self, event: Event, kernel: Kernel) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        self._handle(event)


BACKOFF = {"backoff_base": 10.0, "backoff_max": 100.0}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def outbox_kernel(migrated_kernel: Callable[..., Kernel], clock: FakeClock) -> Callable[..., Kernel]:
    """A migrated kernel with the given subscribers, ``outbox`` overrides and the fake clock."""

    def factory(plugins: dict[str, object] | None = None, **outbox: Any) -> Kernel:
        kernel = migrated_kernel(plugins, outbox=outbox) if outbox else migrated_kernel(plugins)
        kernel.clock = clock
        return kernel

    return factory


def publish(kernel: Kernel, type: str = "order.paid", payload: dict[str, Any] | None = None) -> Event:
    with kernel.session() as session:
        return kernel.outbox.publish(session, type, payload)


def delivery_rows(kernel: Kernel) -> list[OutboxDelivery]:
    with kernel.session() as session:
        return list(session.scalars(select(OutboxDelivery).order_by(OutboxDelivery.id)))


def count(kernel: Kernel, model: type) -> int:
    with kernel.session() as session:
        return session.scalar(select(func.count()).select_from(model))


# -- publishing and delivery ---------------------------------------------------------


async def test_published_event_reaches_every_subscriber_exactly_once(outbox_kernel):
    """A committed event is handed to each subscribing plugin once, with what was published."""
    sync_sub, async_sub = Recorder(), AsyncRecorder()
    kernel = outbox_kernel({"mailer": sync_sub, "crm": async_sub})
    with kernel.session() as session:
        first = kernel.outbox.publish(session, "order.paid", {"order": 1, "lines": [{"sku": "a", "qty": 2}]})
        second = kernel.outbox.publish(session, "order.refunded", {"order": 1})

    assert await kernel.outbox.drain() == 4
    for subscriber in (sync_sub, async_sub):
        assert [e.id for e in subscriber.events] == [first.id, second.id]
        got = subscriber.events[0]
        assert (got.type, got.payload, got.attempt) == ("order.paid", first.payload, 1)
        assert got.created_at == first.created_at
        assert got.created_at.utcoffset() == timedelta(0)

    assert await kernel.outbox.drain() == 0, "nothing is redelivered once delivered"
    assert len(sync_sub.events) == len(async_sub.events) == 2
    rows = delivery_rows(kernel)
    assert sorted((r.subscriber, r.status, r.attempts) for r in rows) == sorted(
        [(name, "delivered", 1) for name in ("mailer", "crm") for _ in range(2)]
    )
    assert all(r.locked_until is None and r.delivered_at is not None for r in rows)


async def test_published_event_ids_are_unique_uuids(outbox_kernel):
    """Each event gets its own id, usable by subscribers as an idempotency key."""
    recorder = Recorder()
    kernel = outbox_kernel({"rec": recorder})
    ids = {publish(kernel, payload={"n": n}).id for n in range(5)}
    assert len(ids) == 5 and all(len(i) == 36 for i in ids)
    await kernel.outbox.drain()
    assert {e.id for e in recorder.events} == ids


async def test_rolled_back_transaction_leaves_no_event(outbox_kernel):
    """An event describes a committed change: when the writer's transaction rolls back, it never existed."""
    recorder = Recorder()
    kernel = outbox_kernel({"rec": recorder})
    with pytest.raises(RuntimeError, match="order insert failed"):
        with kernel.session() as session:
            kernel.outbox.publish(session, "order.paid", {"order": 7})
            raise RuntimeError("order insert failed")

    assert count(kernel, OutboxEvent) == 0
    assert count(kernel, OutboxDelivery) == 0
    assert await kernel.outbox.drain() == 0
    assert recorder.events == []


async def test_event_without_subscribers_is_stored_but_nothing_is_dispatched(outbox_kernel):
    """With no subscribing plugin an event is still recorded (auditable) and dispatching is a no-op."""
    kernel = outbox_kernel({})
    publish(kernel)
    assert count(kernel, OutboxEvent) == 1
    assert count(kernel, OutboxDelivery) == 0
    assert await kernel.outbox.drain() == 0


async def test_dispatcher_only_delivers_to_plugins_it_has(outbox_kernel, make_kernel, database_url, clock):
    """A dispatcher lacking a subscriber leaves that subscriber's deliveries for one that has it."""
    mailer, crm = Recorder(), Recorder()
    publisher = outbox_kernel({"mailer": Recorder(), "crm": Recorder()})
    event = publish(publisher)

    only_mailer = make_kernel({"mailer": mailer}, database_url=database_url).load()
    only_mailer.clock = clock
    assert await only_mailer.outbox.drain() == 1
    assert [e.id for e in mailer.events] == [event.id]
    statuses = {r.subscriber: r.status for r in delivery_rows(publisher)}
    assert statuses == {"mailer": "delivered", "crm": "pending"}

    with_crm = make_kernel({"mailer": Recorder(), "crm": crm}, database_url=database_url).load()
    with_crm.clock = clock
    assert await with_crm.outbox.drain() == 1
    assert [e.id for e in crm.events] == [event.id]


# -- invalid events -------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"when": datetime(2030, 1, 1, tzinfo=timezone.utc)},
        {"handle": object()},
        {"tags": {"a", "b"}},
        {"amount": math.nan},
        {"amount": math.inf},
        {("a", "b"): 1},
        ["not", "a", "mapping"],
    ],
    ids=["datetime", "object", "set", "nan", "infinity", "tuple-key", "list"],
)
async def test_non_json_payload_is_rejected_and_writes_nothing(outbox_kernel, payload):
    """A payload that is not strict JSON raises InvalidInput before anything is written,
    even when the caller catches the error and commits the rest of its transaction."""
    recorder = Recorder()
    kernel = outbox_kernel({"rec": recorder})
    with kernel.session() as session:
        with pytest.raises(InvalidInput) as caught:
            kernel.outbox.publish(session, "order.paid", payload)
    assert caught.value.code == "invalid_event"
    assert "JSON" in caught.value.message
    assert count(kernel, OutboxEvent) == 0
    assert count(kernel, OutboxDelivery) == 0
    assert await kernel.outbox.drain() == 0


@pytest.mark.parametrize("type_", ["", "x" * 201])
async def test_event_type_must_be_1_to_200_characters(outbox_kernel, type_):
    kernel = outbox_kernel({"rec": Recorder()})
    with kernel.session() as session:
        with pytest.raises(InvalidInput, match="1 to 200"):
            kernel.outbox.publish(session, type_, {})
    assert count(kernel, OutboxEvent) == 0


async def test_returned_event_is_what_subscribers_receive(outbox_kernel):
    """``publish`` returns the event as subscribers will get it: JSON-normalised
    (tuples become lists, numeric keys become strings), independent of later mutation."""
    recorder = Recorder()
    kernel = outbox_kernel({"rec": recorder})
    payload: dict[Any, Any] = {"ids": (1, 2), 3: "three", "nested": {"ok": True, "none": None}}
    published = publish(kernel, payload=payload)
    payload["ids"] = "mutated after publish"

    await kernel.outbox.drain()
    assert published.payload == {"ids": [1, 2], "3": "three", "nested": {"ok": True, "none": None}}
    assert recorder.events[0].payload == published.payload


async def test_publish_without_payload_delivers_an_empty_dict(outbox_kernel):
    recorder = Recorder()
    kernel = outbox_kernel({"rec": recorder})
    assert publish(kernel, payload=None).payload == {}
    await kernel.outbox.drain()
    assert recorder.events[0].payload == {}


# -- failures, retries, dead deliveries ----------------------------------------------


async def test_failing_subscriber_is_retried_later_without_redelivering_to_the_others(outbox_kernel, clock):
    """One plugin's failure delays only that plugin's delivery, by the backoff, and
    a plugin that already succeeded never sees the event again."""
    good, flaky = Recorder(), Flaky(failures=1)
    kernel = outbox_kernel({"good": good, "flaky": flaky}, **BACKOFF)
    event = publish(kernel)

    assert await kernel.outbox.drain() == 2
    assert [e.id for e in good.events] == [event.id]
    assert flaky.delivered == []
    failed = next(r for r in delivery_rows(kernel) if r.subscriber == "flaky")
    assert (failed.status, failed.attempts, failed.locked_until) == ("pending", 1, None)
    assert "RuntimeError: payment provider down (call 1)" in failed.last_error
    assert "plugin 'flaky'" in failed.last_error
    # first retry after backoff_base seconds, with up to 20% jitter
    wait = (failed.next_attempt_at - clock.now).total_seconds()
    assert 0.8 * BACKOFF["backoff_base"] <= wait <= BACKOFF["backoff_base"]

    assert await kernel.outbox.drain() == 0, "not due before its backoff has elapsed"
    clock.advance(BACKOFF["backoff_base"] + 1)
    assert await kernel.outbox.drain() == 1

    assert [e.id for e in flaky.delivered] == [event.id]
    assert [e.attempt for e in flaky.calls] == [1, 2]
    assert len(good.events) == 1
    assert {(r.subscriber, r.status) for r in delivery_rows(kernel)} == {("good", "delivered"), ("flaky", "delivered")}
    assert all(r.last_error is None for r in delivery_rows(kernel))


async def test_backoff_doubles_and_is_capped(outbox_kernel, clock):
    """Each further failure waits twice as long, never more than ``backoff_max``."""
    flaky = Flaky(failures=100)
    kernel = outbox_kernel({"flaky": flaky}, backoff_base=10.0, backoff_max=30.0, max_attempts=10)
    publish(kernel)
    waits = []
    for _ in range(4):
        assert await kernel.outbox.drain() == 1
        (row,) = delivery_rows(kernel)
        waits.append((row.next_attempt_at - clock.now).total_seconds())
        clock.advance(31)
    for wait, nominal in zip(waits, [10.0, 20.0, 30.0, 30.0]):
        assert 0.8 * nominal <= wait <= nominal


async def test_delivery_is_dead_after_max_attempts_and_retry_revives_it(outbox_kernel, clock):
    """After ``max_attempts`` failures the delivery is dead with its last error, listed by
    ``outbox.list(status="dead")``, never tried again on its own, and ``retry`` makes it due now.
    ``event.id`` is the same on every attempt while ``event.attempt`` counts them."""
    good, flaky = Recorder(), Flaky(failures=3, message="boom 42")
    kernel = outbox_kernel({"good": good, "flaky": flaky}, max_attempts=3, **BACKOFF)
    event = publish(kernel, payload={"order": 9})

    for _ in range(10):  # bounded: stop once nothing more is due even after the backoff
        if await kernel.outbox.drain() == 0:
            break
        clock.advance(BACKOFF["backoff_max"] + 1)
    assert [e.attempt for e in flaky.calls] == [1, 2, 3]
    assert {e.id for e in flaky.calls} == {event.id}
    assert flaky.delivered == []

    dead = kernel.outbox.list(status="dead")
    assert len(dead) == 1
    entry = dead[0]
    assert (entry["event_id"], entry["subscriber"], entry["attempts"]) == (event.id, "flaky", 3)
    assert (entry["type"], entry["payload"]) == ("order.paid", {"order": 9})
    assert "RuntimeError: boom 42 (call 3)" in entry["last_error"]
    assert [d["subscriber"] for d in kernel.outbox.list(status="delivered")] == ["good"]
    assert {d["subscriber"] for d in kernel.outbox.list()} == {"good", "flaky"}

    clock.advance(10 * BACKOFF["backoff_max"])
    assert await kernel.outbox.drain() == 0, "a dead delivery is not retried on its own"

    assert kernel.outbox.retry(event.id) == 1, "only the dead delivery, not the delivered one"
    assert kernel.outbox.list(status="dead") == []
    assert await kernel.outbox.drain() == 1
    assert [e.id for e in flaky.delivered] == [event.id]
    assert len(good.events) == 1
    assert kernel.outbox.list(status="delivered")[0]["event_id"] == event.id
    assert len(kernel.outbox.list(status="delivered")) == 2


async def test_retry_of_an_unknown_event_raises_not_found(outbox_kernel):
    kernel = outbox_kernel({"rec": Recorder()})
    with pytest.raises(NotFound, match="no outbox event"):
        kernel.outbox.retry("00000000-0000-0000-0000-000000000000")


async def test_retry_makes_a_backing_off_delivery_due_now(outbox_kernel, clock):
    """``retry`` does not wait for the backoff of a failing (not yet dead) delivery."""
    flaky = Flaky(failures=1)
    kernel = outbox_kernel({"flaky": flaky}, **BACKOFF)
    event = publish(kernel)
    await kernel.outbox.drain()
    assert await kernel.outbox.drain() == 0
    assert kernel.outbox.retry(event.id) == 1
    assert await kernel.outbox.drain() == 1
    assert [e.id for e in flaky.delivered] == [event.id]


async def test_async_subscribers_are_awaited_and_their_failures_retried(outbox_kernel, clock):
    """An ``async def vendo_on_event`` runs to completion; an exception it raises after an
    ``await`` counts as a failure and is retried like a synchronous one."""
    recorder, flaky = AsyncRecorder(), AsyncFlaky(failures=1)
    kernel = outbox_kernel({"rec": recorder, "flaky": flaky}, **BACKOFF)
    event = publish(kernel)
    assert await kernel.outbox.drain() == 2
    assert [e.id for e in recorder.events] == [event.id]
    assert flaky.delivered == []
    clock.advance(BACKOFF["backoff_max"] + 1)
    assert await kernel.outbox.drain() == 1
    assert [(e.id, e.attempt) for e in flaky.delivered] == [(event.id, 2)]


async def test_subscriber_failure_does_not_stop_the_batch(outbox_kernel):
    """A failing delivery does not prevent the other due deliveries of the batch."""
    recorder, broken = Recorder(), Flaky(failures=100)
    kernel = outbox_kernel({"rec": recorder, "broken": broken}, batch_size=50, **BACKOFF)
    events = [publish(kernel, payload={"n": n}) for n in range(5)]
    assert await kernel.outbox.drain() == 10
    assert [e.id for e in recorder.events] == [e.id for e in events]
    assert len(broken.calls) == 5


# -- leases ---------------------------------------------------------------------------


async def test_expired_lease_of_a_dead_worker_is_redelivered(outbox_kernel, clock):
    """A worker that claimed a delivery and died (never recorded an outcome) holds it only
    until its lease expires; another dispatcher then delivers it, as attempt 2. The dead
    worker's late report cannot overwrite that outcome."""
    recorder = Recorder()
    kernel = outbox_kernel({"rec": recorder}, lease_seconds=30.0)
    event = publish(kernel)

    (stale,) = kernel.outbox._claim(10)  # the worker claims, then dies
    assert (stale.event.id, stale.attempts) == (event.id, 1)
    assert await kernel.outbox.drain() == 0, "leased deliveries are not claimed twice"
    clock.advance(29)
    assert await kernel.outbox.drain() == 0, "still leased"
    assert recorder.events == []

    clock.advance(2)
    assert await kernel.outbox.drain() == 1
    assert [(e.id, e.attempt) for e in recorder.events] == [(event.id, 2)]

    kernel.outbox._record(stale, "late report of the dead worker")
    (row,) = delivery_rows(kernel)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 2, None)
    assert await kernel.outbox.drain() == 0


async def test_retry_leaves_a_delivery_in_flight_to_its_worker(outbox_kernel, clock):
    """``retry`` while a worker holds a delivery does not hand it to a second worker, and
    that worker's outcome is still recorded; once the lease has expired, retry applies."""
    flaky = Flaky(failures=1)
    kernel = outbox_kernel({"flaky": flaky}, lease_seconds=30.0, **BACKOFF)
    event = publish(kernel)
    await kernel.outbox.drain()  # attempt 1 failed: the delivery is "failing"

    clock.advance(BACKOFF["backoff_max"] + 1)
    (in_flight,) = kernel.outbox._claim(10)  # attempt 2 is being delivered by a worker
    assert kernel.outbox.retry(event.id) == 0
    assert await kernel.outbox.drain() == 0, "not claimable by another worker meanwhile"
    kernel.outbox._record(in_flight, None)  # the worker succeeds
    (row,) = delivery_rows(kernel)
    assert (row.status, row.attempts) == ("delivered", 2)

    other = publish(kernel)
    (abandoned,) = kernel.outbox._claim(10)
    clock.advance(31)
    assert kernel.outbox.retry(other.id) == 1, "an expired lease no longer protects it"
    assert await kernel.outbox.drain() == 1
    assert flaky.delivered[-1].id == other.id


async def test_claims_do_not_overlap(outbox_kernel):
    """Two claims in a row hand out disjoint deliveries, each at most ``batch_size``."""
    kernel = outbox_kernel({"rec": Recorder()}, batch_size=3)
    for n in range(5):
        publish(kernel, payload={"n": n})
    first = kernel.outbox._claim(3)
    second = kernel.outbox._claim(3)
    third = kernel.outbox._claim(3)
    assert (len(first), len(second), len(third)) == (3, 2, 0)
    assert not {c.delivery_id for c in first} & {c.delivery_id for c in second}


# -- several processes ------------------------------------------------------------------

WORKER = textwrap.dedent(
    '''
    """One dispatcher process: its own Kernel on the shared database, drained once."""
    import asyncio, json, os, sys, time
    from pathlib import Path

    from vendo import hookimpl
    from vendo.config import load_settings
    from vendo.kernel import Kernel

    url, out, rendezvous, index, workers = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4], int(sys.argv[5])


    class Appender:
        def __init__(self):
            self.first = True

        @hookimpl
        def vendo_on_event(self, event, kernel):
            if self.first:
                # Hold the first claimed batch until every worker holds one, so all
                # of them demonstrably claim at the same time (bounded wait).
                self.first = False
                (rendezvous / f"holding-{index}").touch()
                deadline = time.monotonic() + 60
                while len(list(rendezvous.glob("holding-*"))) < workers and time.monotonic() < deadline:
                    time.sleep(0.01)
            fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{event.id} {index} {event.attempt}\\n".encode())
            finally:
                os.close(fd)


    settings = load_settings(overrides={
        "database_url": url,
        "data_dir": str(rendezvous / f"data-{index}"),
        "plugins": {"autoload": False},
        "outbox": {"batch_size": 5, "lease_seconds": 600},
    })
    kernel = Kernel(settings, plugins={"appender": Appender()}).load()
    try:
        attempted = asyncio.run(kernel.outbox.drain())
    finally:
        kernel.close()
    print(json.dumps({"worker": index, "attempted": attempted}))
    '''
)


def test_concurrent_processes_deliver_each_event_exactly_once(migrated_kernel, tmp_path):
    """Several OS processes dispatching the same database at once deliver each of 200
    events exactly once in total: claims never overlap, none is lost."""
    workers, events = 4, 200
    kernel = migrated_kernel({"appender": Recorder()})
    url = kernel.settings.resolved_database_url
    with kernel.session() as session:
        published = [kernel.outbox.publish(session, "load.test", {"n": n}).id for n in range(events)]

    script = tmp_path / "dispatch_worker.py"
    script.write_text(WORKER)
    out = tmp_path / "delivered.log"
    rendezvous = tmp_path / "rendezvous"
    rendezvous.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), url, str(out), str(rendezvous), str(i), str(workers)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(workers)
    ]
    results = []
    deadline = time.monotonic() + 240
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((proc.returncode, stdout, stderr))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    for code, stdout, stderr in results:
        assert code == 0, f"worker failed ({code}):\n{stdout}\n{stderr}"

    lines = [line.split() for line in out.read_text().splitlines()]
    delivered = Counter(event_id for event_id, _worker, _attempt in lines)
    duplicates = {event_id: n for event_id, n in delivered.items() if n > 1}
    assert not duplicates, f"{len(duplicates)} events delivered more than once"
    assert set(delivered) == set(published), "every event delivered"
    assert len(lines) == events
    assert {attempt for _e, _w, attempt in lines} == {"1"}
    assert {worker for _e, worker, _a in lines} == {str(i) for i in range(workers)}, (
        "every worker took part"
    )
    rows = delivery_rows(kernel)
    assert len(rows) == events
    assert {(r.status, r.attempts) for r in rows} == {("delivered", 1)}
    assert sum(json.loads(stdout)["attempted"] for _code, stdout, _err in results) == events
