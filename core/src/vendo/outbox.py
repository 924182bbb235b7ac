"""Domain events with a transactional outbox.

:meth:`Outbox.publish` writes an event, and one delivery row per subscribing plugin,
inside the caller's transaction: the event exists if and only if the caller's change
was committed. The dispatcher claims due deliveries with a lease (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, SQLite's single writer otherwise), hands each to its plugin's
``vendo_on_event`` and records the outcome: delivered, retried later with exponential
backoff, or dead after ``outbox.max_attempts``. Several dispatchers (workers, processes)
can run at once; a delivery whose worker died is retried when its lease expires, so
delivery is at least once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, or_, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Mapped, Session, mapped_column

from vendo.db import BigIntPK, Model
from vendo.errors import InvalidInput, NotFound
from vendo.events import Event
from vendo.hooks import HookCallError

if TYPE_CHECKING:  # pragma: no cover
    from vendo.kernel import Kernel

log = logging.getLogger("vendo.outbox")

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


class OutboxEvent(Model):
    """A published domain event."""

    __tablename__ = "vendo_outbox_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(200), index=True)
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class OutboxDelivery(Model):
    """The delivery of one event to one subscribing plugin."""

    __tablename__ = "vendo_outbox_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "subscriber"),
        Index("ix_vendo_outbox_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("vendo_outbox_events.id", ondelete="CASCADE"))
    subscriber: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    locked_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]


@dataclass(frozen=True)
class _Claim:
    delivery_id: int
    attempts: int
    subscriber: str
    event: Event


class Outbox:
    """Publishes events in the writer's transaction and dispatches them to subscribers."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def publish(self, session: Session, type: str, payload: dict[str, Any] | None = None) -> Event:
        """Record an event in ``session``'s transaction (committed with the caller's writes).

        :param session: the SQLAlchemy session of the write this event describes.
        :param type: dotted event name, e.g. ``"billing.subscription.updated"``.
        :param payload: JSON-serialisable data.
        :return: the event as subscribers will receive it.
        :raises InvalidInput: empty type or a payload that is not JSON-serialisable.
        """
        if not type or len(type) > 200:
            raise InvalidInput("event type must be 1 to 200 characters", code="invalid_event")
        try:
            # Strict JSON (no NaN/Infinity, which PostgreSQL rejects), read back so the
            # returned event carries exactly what subscribers will receive.
            payload = json.loads(json.dumps(dict(payload or {}), allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"event payload is not JSON-serialisable: {exc}", code="invalid_event") from None
        now = self._kernel.now()
        row = OutboxEvent(uid=str(uuid.uuid4()), type=type, payload=payload, created_at=now)
        session.add(row)
        session.flush()
        for subscriber in self._kernel.hooks.subscribers():
            session.add(
                OutboxDelivery(
                    event_id=row.id, subscriber=subscriber, status=PENDING, attempts=0, next_attempt_at=now
                )
            )
        if self._wakeup is not None:
            sa_event.listen(session, "after_commit", self._wake, once=True)
        return Event(id=row.uid, type=type, payload=payload, created_at=now)

    def _wake(self, _session: Session) -> None:
        """After the publisher's commit, wake the in-process dispatcher (from any thread)."""
        if self._loop is not None and self._wakeup is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wakeup.set)

    # -- dispatching ---------------------------------------------------------

    def _claim(self, limit: int) -> list[_Claim]:
        kernel = self._kernel
        subscribers = kernel.hooks.subscribers()
        if not subscribers:
            return []
        now = kernel.now()
        lease = now + timedelta(seconds=kernel.settings.outbox.lease_seconds)
        due = (
            select(OutboxDelivery.id)
            .where(
                OutboxDelivery.status == PENDING,
                OutboxDelivery.next_attempt_at <= now,
                or_(OutboxDelivery.locked_until.is_(None), OutboxDelivery.locked_until < now),
                OutboxDelivery.subscriber.in_(subscribers),
            )
            .order_by(OutboxDelivery.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with kernel.session() as session:
            claimed = session.execute(
                update(OutboxDelivery)
                .where(
                    OutboxDelivery.id.in_(due.scalar_subquery()),
                    or_(OutboxDelivery.locked_until.is_(None), OutboxDelivery.locked_until < now),
                )
                .values(locked_until=lease, attempts=OutboxDelivery.attempts + 1)
                .returning(OutboxDelivery.id, OutboxDelivery.event_id, OutboxDelivery.subscriber, OutboxDelivery.attempts)
            ).all()
            if not claimed:
                return []
            events = {
                row.id: row
                for row in session.scalars(
                    select(OutboxEvent).where(OutboxEvent.id.in_({c.event_id for c in claimed}))
                )
            }
            return [
                _Claim(
                    delivery_id=c.id,
                    attempts=c.attempts,
                    subscriber=c.subscriber,
                    event=Event(
                        id=events[c.event_id].uid,
                        type=events[c.event_id].type,
                        payload=events[c.event_id].payload,
                        created_at=events[c.event_id].created_at,
                        attempt=c.attempts,
                    ),
                )
                for c in sorted(claimed, key=lambda c: c.id)
            ]

    def _backoff(self, attempts: int) -> float:
        settings = self._kernel.settings.outbox
        delay = min(settings.backoff_base * (2 ** (attempts - 1)), settings.backoff_max)
        return delay * random.uniform(0.8, 1.0)

    def _record(self, claim: _Claim, error: str | None) -> None:
        kernel = self._kernel
        now = kernel.now()
        if error is None:
            values: dict[str, Any] = {"status": DELIVERED, "delivered_at": now, "locked_until": None, "last_error": None}
        elif claim.attempts >= kernel.settings.outbox.max_attempts:
            values = {"status": DEAD, "locked_until": None, "last_error": error}
        else:
            values = {
                "next_attempt_at": now + timedelta(seconds=self._backoff(claim.attempts)),
                "locked_until": None,
                "last_error": error,
            }
        with kernel.session() as session:
            # Only the holder of this attempt may record it: a re-claim bumps `attempts`.
            session.execute(
                update(OutboxDelivery)
                .where(OutboxDelivery.id == claim.delivery_id, OutboxDelivery.attempts == claim.attempts)
                .values(**values)
            )
        outcome = "delivered" if error is None else values.get("status", "retry")
        kernel.metrics.outbox_delivery(claim.subscriber, outcome)
        if error is not None:
            log.warning(
                "event %s (%s) to plugin '%s', attempt %d: %s",
                claim.event.id, claim.event.type, claim.subscriber, claim.attempts, error,
            )

    async def dispatch_once(self) -> int:
        """Claim one batch of due deliveries and deliver them.

        :return: how many deliveries were attempted (0 when nothing is due).
        """
        claims = await anyio.to_thread.run_sync(self._claim, self._kernel.settings.outbox.batch_size)
        for claim in claims:
            error = None
            try:
                await self._kernel.hooks.deliver(claim.subscriber, claim.event, self._kernel)
            except HookCallError as exc:
                error = str(exc)[:2000]
            except LookupError as exc:
                error = str(exc)
            await anyio.to_thread.run_sync(self._record, claim, error)
        return len(claims)

    async def drain(self, max_batches: int = 1_000_000) -> int:
        """Dispatch until nothing is due; return the number of deliveries attempted."""
        total = 0
        for _ in range(max_batches):
            done = await self.dispatch_once()
            total += done
            if done == 0:
                break
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch continuously until ``stop`` is set (the server's background task)."""
        self._wakeup = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        interval = self._kernel.settings.outbox.poll_interval
        while not stop.is_set():
            try:
                busy = await self.dispatch_once()
            except Exception:  # the database may be briefly unreachable; try again later
                log.exception("outbox dispatch failed")
                busy = 0
            if busy:
                continue
            self._wakeup.clear()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wakeup.wait())]
            await asyncio.wait(waiters, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

    def list(self, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Recent deliveries with their event, newest first (``vendo outbox list``)."""
        query = (
            select(OutboxDelivery, OutboxEvent)
            .join(OutboxEvent, OutboxEvent.id == OutboxDelivery.event_id)
            .order_by(OutboxDelivery.id.desc())
            .limit(limit)
        )
        if status:
            query = query.where(OutboxDelivery.status == status)
        with self._kernel.session() as session:
            return [
                {
                    "event_id": event.uid,
                    "type": event.type,
                    "created_at": event.created_at.isoformat(),
                    "subscriber": delivery.subscriber,
                    "status": delivery.status,
                    "attempts": delivery.attempts,
                    "next_attempt_at": delivery.next_attempt_at.isoformat(),
                    "last_error": delivery.last_error,
                    "payload": event.payload,
                }
                for delivery, event in session.execute(query)
            ]

    def retry(self, event_id: str) -> int:
        """Make an event's dead or failing deliveries due now; return how many.

        A delivery a worker holds right now (unexpired lease) is left to that worker.
        """
        now = self._kernel.now()
        with self._kernel.session() as session:
            event = session.scalar(select(OutboxEvent).where(OutboxEvent.uid == event_id))
            if event is None:
                raise NotFound(f"no outbox event with id {event_id}")
            result = session.execute(
                update(OutboxDelivery)
                .where(
                    OutboxDelivery.event_id == event.id,
                    OutboxDelivery.status != DELIVERED,
                    or_(OutboxDelivery.locked_until.is_(None), OutboxDelivery.locked_until < now),
                )
                .values(status=PENDING, next_attempt_at=now, locked_until=None, attempts=0)
            )
            return result.rowcount
