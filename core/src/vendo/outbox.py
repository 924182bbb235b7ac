"""Domain events with a transactional outbox.

:meth:`Outbox.publish` writes an event, and one delivery row per subscribing plugin,
inside the caller's transaction: the event exists if and only if the caller's change
was committed. The dispatcher claims due deliveries with a lease (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, SQLite's single writer otherwise), hands each to its plugin's
``vendo_on_event`` and records the outcome: delivered, retried later with exponential
backoff, or dead after ``outbox.max_attempts``. Several dispatchers (workers, processes)
can run at once; a delivery whose worker died is retried when its lease expires, so
delivery is at least once.

A ``notification.requested`` event also gets a delivery routed to ``notify:<channel>``,
handed to the channel's notifier (see :mod:`vendo.notifications`); while no notifier serves
the channel it stays pending, unclaimed. ``publish(..., key=...)`` publishes at most once
per key (a unique column), which makes notifications idempotent.
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
from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, exists, or_, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from vendo.capabilities import NOTIFICATION_REQUESTED
from vendo.db import BigIntPK, Model
from vendo.errors import InvalidInput, NotFound
from vendo.events import Event
from vendo.hooks import HookCallError
from vendo.notifications import ROUTE_PREFIX, check_request, dedup_key

if TYPE_CHECKING:  # pragma: no cover
    from vendo.kernel import Kernel

log = logging.getLogger("vendo.outbox")

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
#: The status of an event no subscriber or notifier route received (``vendo outbox list``).
UNROUTED = "unrouted"
EVENT_STATUSES = (PENDING, DELIVERED, DEAD, UNROUTED)


class OutboxEvent(Model):
    """A published domain event."""

    __tablename__ = "vendo_outbox_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(200), index=True)
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    dedup_key: Mapped[str | None] = mapped_column(String(255), unique=True)


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

    def publish(self, session: Session, type: str, payload: dict[str, Any] | None = None, *,
                key: str | None = None) -> Event:
        """Record an event in ``session``'s transaction (committed with the caller's writes).

        :param session: the SQLAlchemy session of the write this event describes.
        :param type: dotted event name, e.g. ``"billing.subscription.updated"``.
        :param payload: JSON-serialisable data.
        :param key: publish at most once per key: when an event with this key exists
            (committed, or earlier in this transaction), it is returned and nothing is
            published. ``notification.requested`` events are keyed by their
            ``idempotency_key`` (and their payload validated) even without it.
        :return: the event as subscribers will receive it.
        :raises InvalidInput: empty type, a payload that is not JSON-serialisable, a key
            longer than 255 characters, or an invalid notification.
        """
        if not type or len(type) > 200:
            raise InvalidInput("event type must be 1 to 200 characters", code="invalid_event")
        if type == NOTIFICATION_REQUESTED:
            payload = check_request(payload)
            key = key or dedup_key(payload["idempotency_key"])
        if key is not None and (not isinstance(key, str) or not key or len(key) > 255):
            raise InvalidInput("event key must be 1 to 255 characters", code="invalid_event")
        try:
            # Strict JSON (no NaN/Infinity, which PostgreSQL rejects), read back so the
            # returned event carries exactly what subscribers will receive.
            payload = json.loads(json.dumps(dict(payload or {}), allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"event payload is not JSON-serialisable: {exc}", code="invalid_event") from None
        now = self._kernel.now()
        row = OutboxEvent(uid=str(uuid.uuid4()), type=type, payload=payload, created_at=now, dedup_key=key)
        if key is None:
            session.add(row)
            session.flush()
        else:
            existing = session.scalar(select(OutboxEvent).where(OutboxEvent.dedup_key == key))
            if existing is not None:
                return _event_of(existing)
            try:
                with session.begin_nested():  # a concurrent publisher of the same key wins: keep ours out
                    session.add(row)
                    session.flush()
            except IntegrityError:
                existing = session.scalar(select(OutboxEvent).where(OutboxEvent.dedup_key == key))
                if existing is None:
                    raise
                return _event_of(existing)
        routes = list(self._kernel.hooks.subscribers())
        if type == NOTIFICATION_REQUESTED:
            routes.append(ROUTE_PREFIX + payload["channel"])
        for subscriber in routes:
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
        subscribers = kernel.hooks.subscribers() + kernel.notifications.routes()
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
            if claim.subscriber.startswith(ROUTE_PREFIX):
                try:
                    await self._kernel.notifications.deliver(claim.subscriber, claim.event)
                except Exception as exc:  # a notifier failed: say how (never the message), retry later
                    error = _describe(exc)
            else:
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

    def events(self, type: str | None = None, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Recent events with their deliveries, newest first (``vendo outbox list``).

        Unlike :meth:`list`, an event nobody received is listed too (status ``unrouted``).
        An event's status is the most urgent of its deliveries' (``dead``, then ``pending``,
        then ``delivered``); the ``status`` filter keeps the events with at least one delivery
        in that status, or with none for ``unrouted``. Payloads are left out (see :meth:`event`).

        :raises InvalidInput: unknown status.
        """
        if status is not None and status not in EVENT_STATUSES:
            raise InvalidInput(f"unknown status {status!r}: use {', '.join(EVENT_STATUSES)}", code="invalid_status")
        query = select(OutboxEvent).order_by(OutboxEvent.id.desc()).limit(limit)
        if type:
            query = query.where(OutboxEvent.type == type)
        if status == UNROUTED:
            query = query.where(~exists().where(OutboxDelivery.event_id == OutboxEvent.id))
        elif status is not None:
            query = query.where(exists().where(OutboxDelivery.event_id == OutboxEvent.id,
                                               OutboxDelivery.status == status))
        with self._kernel.session() as session:
            events = list(session.scalars(query))
            deliveries: dict[int, list[OutboxDelivery]] = {event.id: [] for event in events}
            if events:
                for delivery in session.scalars(select(OutboxDelivery).where(OutboxDelivery.event_id.in_(deliveries))
                                                .order_by(OutboxDelivery.id)):
                    deliveries[delivery.event_id].append(delivery)
            return [self._event_dict(event, deliveries[event.id], payload=False) for event in events]

    def event(self, event_id: str) -> dict[str, Any]:
        """One event with its payload and deliveries (``vendo outbox show``).

        The payload is shown as stored: a notification's ``context`` in clear, its
        ``secret_context`` (a license key) only as the ciphertext of its ``sealed`` field
        (:mod:`vendo.notifications`). Never log it.

        :raises NotFound: unknown event id.
        """
        with self._kernel.session() as session:
            event = session.scalar(select(OutboxEvent).where(OutboxEvent.uid == event_id))
            if event is None:
                raise NotFound(f"no outbox event with id {event_id}", code="event_not_found")
            deliveries = list(session.scalars(select(OutboxDelivery).where(OutboxDelivery.event_id == event.id)
                                              .order_by(OutboxDelivery.id)))
            return self._event_dict(event, deliveries, payload=True)

    def _event_dict(self, event: OutboxEvent, deliveries: list[OutboxDelivery], *, payload: bool) -> dict[str, Any]:
        statuses = {d.status for d in deliveries}
        status = next((s for s in (DEAD, PENDING, DELIVERED) if s in statuses), UNROUTED)
        servable = set(self._kernel.notifications.routes())
        data: dict[str, Any] = {
            "event_id": event.uid,
            "type": event.type,
            "created_at": event.created_at.isoformat(),
            "status": status,
            "deliveries": [
                {
                    "subscriber": d.subscriber,
                    "status": d.status,
                    "attempts": d.attempts,
                    "next_attempt_at": d.next_attempt_at.isoformat(),
                    "delivered_at": d.delivered_at.isoformat() if d.delivered_at else None,
                    "last_error": d.last_error,
                    "waiting": (f"no notifier registered for channel '{d.subscriber[len(ROUTE_PREFIX):]}'"
                                if d.status == PENDING and d.subscriber.startswith(ROUTE_PREFIX)
                                and d.subscriber not in servable else None),
                }
                for d in deliveries
            ],
        }
        if event.type == NOTIFICATION_REQUESTED:
            data["notification"] = {k: event.payload.get(k) for k in ("channel", "to", "template")}
        if payload:
            data["payload"] = event.payload
        return data

    def waiting_notifications(self) -> dict[str, int]:
        """``{channel: pending notifications}`` for channels no notifier serves now
        (``vendo plugins doctor`` warns about them)."""
        from sqlalchemy import func

        servable = set(self._kernel.notifications.routes())
        with self._kernel.session() as session:
            rows = session.execute(
                select(OutboxDelivery.subscriber, func.count())
                .where(OutboxDelivery.status == PENDING, OutboxDelivery.subscriber.like(ROUTE_PREFIX + "%"))
                .group_by(OutboxDelivery.subscriber)
            ).all()
        return {route[len(ROUTE_PREFIX):]: count for route, count in rows if route not in servable}

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


def _event_of(row: OutboxEvent) -> Event:
    """An event row as subscribers receive it."""
    return Event(id=row.uid, type=row.type, payload=row.payload, created_at=row.created_at)


def _describe(exc: BaseException) -> str:
    """``Type: first line of the message``, short, for a delivery's ``last_error``."""
    lines = str(exc).strip().splitlines()
    return (f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__)[:2000]
