"""Notifications: ``kernel.notify``, the notifier family, delivery from the outbox, and the
outbox listing an operator reads when no notifier is installed.

Every storage test runs on SQLite and on PostgreSQL. Time is a fake clock, so retries are
driven by advancing it.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select

from vendo import InvalidInput, NotFound, Notification, Notifier, hookimpl
from vendo.kernel import Kernel
from vendo.outbox import OutboxDelivery, OutboxEvent

LICENSE_CONTEXT = {"product": "QoreDB", "tier": "pro", "key": "QDB-PRO-7F3A-SECRET", "license_id": "lic_1",
                   "expires_at": None}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class MemoryNotifier:
    """An email notifier that keeps what it is asked to send; fails its first ``failures`` sends."""

    channel = "email"

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls: list[Notification] = []
        self.sent: list[Notification] = []

    async def send(self, notification: Notification) -> None:
        self.calls.append(notification)
        if len(self.calls) <= self.failures:
            raise ConnectionRefusedError(f"smtp server down (call {len(self.calls)})")
        self.sent.append(notification)


class NotifierPlugin:
    """A plugin implementing the notifier hook, as a third-party email plugin would."""

    def __init__(self, notifier: Any, name: str = "memory") -> None:
        self.notifier = notifier
        self.name = name

    @hookimpl
    def vendo_register_notifiers(self, register: Any, kernel: Kernel) -> None:
        register(self.name, self.notifier)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kernel_with(migrated_kernel, clock):
    def factory(plugins: dict[str, object] | None = None, **overrides: Any) -> Kernel:
        kernel = migrated_kernel(plugins or {}, outbox={"backoff_base": 10.0, "backoff_max": 100.0,
                                                       **overrides.pop("outbox", {})}, **overrides)
        kernel.clock = clock
        return kernel

    return factory


def notify(kernel: Kernel, key: str = "license:lic_1", **fields: Any):
    values = {"to": "ada@example.com", "template": "license_key", "context": LICENSE_CONTEXT, **fields}
    with kernel.session() as session:
        return kernel.notify(session, idempotency_key=key, **values)


def count(kernel: Kernel, model: type) -> int:
    with kernel.session() as session:
        return session.scalar(select(func.count()).select_from(model))


# -- kernel.notify -------------------------------------------------------------------------


def test_notify_publishes_the_contract_payload(kernel_with):
    kernel = kernel_with()
    event = notify(kernel)
    assert event.type == "notification.requested"
    assert event.payload == {"channel": "email", "to": "ada@example.com", "template": "license_key",
                             "context": LICENSE_CONTEXT, "idempotency_key": "license:lic_1"}
    shown = kernel.outbox.event(event.id)
    assert shown["payload"] == event.payload and shown["status"] == "pending"
    assert [d["subscriber"] for d in shown["deliveries"]] == ["notify:email"]


async def test_notify_seals_its_secret_context_and_the_notifier_gets_it(kernel_with):
    """``kernel.notify`` takes ``secret_context`` like ``kernel.notifications.request``: the
    stored row holds ciphertext only, the notifier the whole context."""
    notifier = MemoryNotifier()
    kernel = kernel_with({"mail": NotifierPlugin(notifier)})
    clear = {"workspace": "Acme", "inviter": "Ada"}
    link = "https://app.test/invitations/accept?token=vinv_SECRET-TOKEN-1"
    event = notify(kernel, "invitation:inv_1", template="invitation", context=clear,
                   secret_context={"accept_url": link})
    with kernel.session() as session:
        [row] = session.scalars(select(OutboxEvent)).all()
        stored = dict(row.payload)
    assert "SECRET-TOKEN-1" not in str(stored) and "SECRET-TOKEN-1" not in str(kernel.outbox.event(event.id))
    assert stored["context"] == clear and isinstance(stored["sealed"], str)
    assert kernel.notifications.context_of(stored) == {**clear, "accept_url": link}
    assert await kernel.outbox.drain() == 1
    [sent] = notifier.sent
    assert sent.context == {**clear, "accept_url": link} and sent.idempotency_key == "invitation:inv_1"
    with pytest.raises(InvalidInput) as caught:
        notify(kernel, "invitation:inv_2", template="invitation", context={**clear, "accept_url": "x"},
               secret_context={"accept_url": link})
    assert caught.value.code == "invalid_notification"


def test_same_idempotency_key_publishes_once(kernel_with):
    """Across transactions, within one, and through outbox.publish directly."""
    kernel = kernel_with()
    first = notify(kernel)
    again = notify(kernel, context={**LICENSE_CONTEXT, "tier": "team"})
    assert again.id == first.id and again.payload == first.payload
    with kernel.session() as session:
        a = kernel.notify(session, to="bob@example.com", template="invitation", idempotency_key="inv:1",
                          context={"workspace": "Acme", "inviter": "Ada", "accept_url": "https://x.test/a"})
        b = kernel.notify(session, to="bob@example.com", template="invitation", idempotency_key="inv:1",
                          context={"workspace": "Acme", "inviter": "Ada", "accept_url": "https://x.test/a"})
        c = kernel.outbox.publish(session, "notification.requested", {**a.payload})
    assert a.id == b.id == c.id
    assert count(kernel, OutboxEvent) == 2 and count(kernel, OutboxDelivery) == 2


def test_concurrent_publishers_of_one_key_publish_once(kernel_with):
    """Two transactions racing with the same key: the unique key lets one event through."""
    kernel = kernel_with()
    barrier = threading.Barrier(4)
    ids: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            ids.append(notify(kernel, key="race:1").id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(ids)) == 1 and len(ids) == 4
    assert count(kernel, OutboxEvent) == 1


def test_a_rolled_back_notification_frees_its_key(kernel_with):
    kernel = kernel_with()
    with pytest.raises(RuntimeError):
        with kernel.session() as session:
            kernel.notify(session, to="ada@example.com", template="password_reset", idempotency_key="reset:1",
                          context={"reset_url": "https://x.test/r", "expires_minutes": 60})
            raise RuntimeError("the reset request failed")
    assert count(kernel, OutboxEvent) == 0
    assert notify(kernel, key="reset:1", template="password_reset").payload["template"] == "password_reset"


@pytest.mark.parametrize(("fields", "code"), [
    ({"to": "not an address"}, "invalid_email"),
    ({"to": ""}, "invalid_notification"),
    ({"template": "Bad Name"}, "invalid_notification"),
    ({"channel": "E-Mail"}, "invalid_notification"),
    ({"context": ["not", "an", "object"]}, "invalid_notification"),
    ({"key": ""}, "invalid_notification"),
    ({"key": "has space"}, "invalid_notification"),
    ({"key": "x" * 201}, "invalid_notification"),
    ({"context": {"amount": float("nan")}}, "invalid_event"),
])
def test_bad_notifications_are_refused_and_nothing_is_written(kernel_with, fields, code):
    kernel = kernel_with()
    fields = dict(fields)
    key = fields.pop("key", "k:1")
    with pytest.raises(InvalidInput) as caught:
        notify(kernel, key=key, **fields)
    assert caught.value.code == code
    assert count(kernel, OutboxEvent) == 0


def test_direct_publish_with_unknown_fields_is_refused(kernel_with):
    kernel = kernel_with()
    with pytest.raises(InvalidInput, match="unknown notification fields: cc"):
        with kernel.session() as session:
            kernel.outbox.publish(session, "notification.requested", {
                "channel": "email", "to": "a@example.com", "template": "invitation", "context": {},
                "idempotency_key": "k", "cc": "b@example.com"})


# -- delivery to notifiers -----------------------------------------------------------------


async def test_notification_reaches_the_notifier_of_its_channel(kernel_with):
    notifier = MemoryNotifier()
    kernel = kernel_with({"mail": NotifierPlugin(notifier)})
    event = notify(kernel)
    assert await kernel.outbox.drain() == 1
    [sent] = notifier.sent
    assert sent == Notification(id=event.id, channel="email", to="ada@example.com", template="license_key",
                                context=LICENSE_CONTEXT, idempotency_key="license:lic_1", attempt=1)
    assert kernel.outbox.event(event.id)["status"] == "delivered"
    assert await kernel.outbox.drain() == 0


async def test_other_channels_and_other_events_do_not_reach_it(kernel_with):
    notifier = MemoryNotifier()
    kernel = kernel_with({"mail": NotifierPlugin(notifier)})
    notify(kernel, key="sms:1", channel="sms", to="+33600000000")
    with kernel.session() as session:
        kernel.outbox.publish(session, "order.paid", {"to": "ada@example.com"})
    assert await kernel.outbox.drain() == 0
    assert notifier.calls == []
    [waiting] = kernel.outbox.events(type="notification.requested")
    assert waiting["deliveries"][0]["waiting"] == "no notifier registered for channel 'sms'"


async def test_failing_send_is_retried_with_backoff_then_succeeds(kernel_with, clock):
    notifier = MemoryNotifier(failures=2)
    kernel = kernel_with({"mail": NotifierPlugin(notifier)})
    event = notify(kernel)
    assert await kernel.outbox.drain() == 1
    [delivery] = kernel.outbox.event(event.id)["deliveries"]
    assert delivery["status"] == "pending" and delivery["attempts"] == 1
    assert delivery["last_error"] == "ConnectionRefusedError: smtp server down (call 1)"
    assert await kernel.outbox.drain() == 0, "not before its backoff"
    clock.advance(10)
    assert await kernel.outbox.drain() == 1
    clock.advance(20)
    assert await kernel.outbox.drain() == 1
    assert [n.attempt for n in notifier.calls] == [1, 2, 3]
    assert len(notifier.sent) == 1
    assert kernel.outbox.event(event.id)["status"] == "delivered"


async def test_a_send_that_always_fails_ends_dead_and_can_be_retried(kernel_with, clock):
    notifier = MemoryNotifier(failures=3)
    kernel = kernel_with({"mail": NotifierPlugin(notifier)}, outbox={"max_attempts": 3})
    event = notify(kernel)
    for _ in range(3):
        await kernel.outbox.drain()
        clock.advance(100)
    assert kernel.outbox.event(event.id)["status"] == "dead"
    assert [e["event_id"] for e in kernel.outbox.events(status="dead")] == [event.id]
    assert kernel.outbox.retry(event.id) == 1
    await kernel.outbox.drain()
    assert len(notifier.sent) == 1 and kernel.outbox.event(event.id)["status"] == "delivered"


async def test_without_a_notifier_emails_wait_then_go_out_when_one_is_installed(
        kernel_with, make_kernel, database_url, clock):
    """No notifier: the delivery stays pending and is never attempted (listed, with the
    reason); a kernel that has one sends it."""
    bare = kernel_with()
    event = notify(bare)
    assert await bare.outbox.drain() == 0
    [row] = bare.outbox.events(status="pending")
    assert row["notification"] == {"channel": "email", "template": "license_key", "to": "ada@example.com"}
    [delivery] = row["deliveries"]
    assert delivery["attempts"] == 0 and delivery["waiting"] == "no notifier registered for channel 'email'"
    assert "payload" not in row
    assert bare.outbox.event(event.id)["payload"]["context"]["key"] == "QDB-PRO-7F3A-SECRET"

    assert bare.outbox.waiting_notifications() == {"email": 1}

    notifier = MemoryNotifier()
    configured = make_kernel({"mail": NotifierPlugin(notifier)}, database_url=database_url).load()
    configured.clock = clock
    assert configured.outbox.waiting_notifications() == {}
    assert await configured.outbox.drain() == 1
    assert [n.id for n in notifier.sent] == [event.id]


async def test_first_active_notifier_of_a_channel_wins_and_providers_choose(kernel_with, make_kernel, database_url):
    first, second = MemoryNotifier(), MemoryNotifier()
    kernel = kernel_with({"a": NotifierPlugin(first, "smtp"), "b": NotifierPlugin(second, "relay")})
    assert kernel.notifications.notifier("email") is first
    assert kernel.notifications.routes() == ["notify:email"]
    chosen = make_kernel({"a": NotifierPlugin(first, "smtp"), "b": NotifierPlugin(second, "relay")},
                         database_url=database_url, providers={"notifier": ["relay"]}).load()
    chosen.providers.configure(chosen.settings.providers)
    assert chosen.notifications.notifier("email") is second
    assert chosen.notifications.notifier("sms") is None


def test_a_notifier_must_implement_the_protocol(make_kernel):
    class NotANotifier:
        channel = "email"

    kernel = make_kernel({"bad": NotifierPlugin(NotANotifier())}).load()
    assert kernel.plugin("bad").status == "failed"
    assert "does not implement Notifier" in kernel.plugin("bad").error
    assert isinstance(MemoryNotifier(), Notifier)


# -- the outbox listing ----------------------------------------------------------------------


async def test_events_listing_filters_by_type_and_status(kernel_with):
    class Sub:
        def vendo_on_event(self, event: Any) -> None:
            if event.payload.get("fail"):
                raise RuntimeError("no")

    kernel = kernel_with({"sub": Sub()}, outbox={"max_attempts": 1})
    with kernel.session() as session:
        ok = kernel.outbox.publish(session, "order.paid", {"n": 1})
        bad = kernel.outbox.publish(session, "order.paid", {"fail": True})
    mail = notify(kernel)
    await kernel.outbox.drain()
    assert [e["event_id"] for e in kernel.outbox.events()] == [mail.id, bad.id, ok.id]
    assert [e["event_id"] for e in kernel.outbox.events(type="order.paid")] == [bad.id, ok.id]
    assert [e["event_id"] for e in kernel.outbox.events(status="dead")] == [bad.id]
    assert [e["event_id"] for e in kernel.outbox.events(status="delivered")] == [mail.id, ok.id]
    assert [e["event_id"] for e in kernel.outbox.events(status="pending")] == [mail.id]
    assert kernel.outbox.events(status="unrouted") == []
    assert kernel.outbox.events(limit=1)[0]["event_id"] == mail.id
    assert {e["status"] for e in kernel.outbox.events()} == {"pending", "dead", "delivered"}
    with pytest.raises(InvalidInput, match="unknown status 'lost'"):
        kernel.outbox.events(status="lost")
    with pytest.raises(NotFound):
        kernel.outbox.event("no-such-event")


def test_an_event_nobody_received_is_listed_as_unrouted(kernel_with):
    kernel = kernel_with()
    with kernel.session() as session:
        event = kernel.outbox.publish(session, "order.paid", {"n": 1})
    [row] = kernel.outbox.events(status="unrouted")
    assert row["event_id"] == event.id and row["deliveries"] == [] and row["status"] == "unrouted"
