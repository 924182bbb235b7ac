"""The kernel's billing service with a provider of the test's own (``acme``: HMAC-signed JSON
webhooks, a hosted checkout at a loopback URL), over real HTTP, on SQLite and PostgreSQL:
idempotent and ordered ingestion, signatures, dunning with grace, failures kept for replay,
an unreachable provider, the ``vendo billing`` commands."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping

import pytest
from sqlalchemy import func, select

from vendo import (
    BillingEvent,
    CheckoutRequest,
    CheckoutSession,
    InvalidSignature,
    NotFound,
    PortalSession,
    SubscriptionInfo,
    hookimpl,
)
from vendo.billing.machine import event_from_json, event_to_json
from vendo.billing.models import BillingCustomer, CheckoutRecord, Subscription, WebhookEvent
from vendo.outbox import OutboxEvent
from vendo_sdk.pytest_plugin import FrozenClock

CATALOG = Path(__file__).resolve().parents[2] / "examples" / "catalogs" / "memento.toml"
SECRET = b"acme-webhook-secret"
SUBJECT = "ws_acme_team"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Acme:
    """A billing provider as a vendor plugin would write it: webhooks signed with HMAC-SHA256
    over ``<timestamp>.<body>``, refused beyond 300 s; checkouts opened over HTTP at ``api``."""

    def __init__(self, kernel: Any, api: str) -> None:
        self.kernel, self.api = kernel, api

    def sign(self, body: bytes, at: int | None = None) -> dict[str, str]:
        stamp = int(self.kernel.now().timestamp()) if at is None else at
        digest = hmac.new(SECRET, f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        return {"Acme-Signature": f"{stamp}:{digest}"}

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[BillingEvent]:
        stamp, _, digest = (headers.get("acme-signature") or "").partition(":")
        expected = hmac.new(SECRET, f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        if not stamp.isdigit() or not hmac.compare_digest(expected, digest):
            raise InvalidSignature("bad acme signature")
        if abs(self.kernel.now().timestamp() - int(stamp)) > 300:
            raise InvalidSignature("stale acme signature")
        return [event_from_json(item) for item in json.loads(body)["events"]]

    async def create_customer(self, subject: str, email: str | None = None) -> str:
        return f"cus_{subject}"

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        import httpx

        async with httpx.AsyncClient(timeout=2) as client:
            response = await client.post(f"{self.api}/checkout", json={"plan": request.plan})
        return CheckoutSession(response.json()["id"], response.json()["url"], request.customer_id)

    async def create_portal(self, customer_id: str, return_url: str) -> PortalSession:
        return PortalSession(f"portal_{customer_id}", f"{self.api}/portal/{customer_id}")

    async def get_subscription(self, subscription_id: str) -> SubscriptionInfo:
        raise NotFound(f"unknown subscription {subscription_id}")

    async def change_subscription(self, change: Any) -> SubscriptionInfo:
        raise NotFound(f"unknown subscription {change.subscription_id}")

    async def cancel_subscription(self, subscription_id: str, at_period_end: bool = True) -> None:
        raise NotFound(f"unknown subscription {subscription_id}")

    async def resume_subscription(self, subscription_id: str) -> SubscriptionInfo:
        raise NotFound(f"unknown subscription {subscription_id}")

    async def list_invoices(self, customer_id: str) -> list[Any]:
        return []

    async def report_usage(self, report: Any) -> None:
        return None

    async def sync_catalog(self, prices: list[Any]) -> dict[str, str]:
        return {p.lookup_key: f"price_{i}" for i, p in enumerate(prices)}


class AcmePlugin:
    def __init__(self, api: str) -> None:
        self.api = api

    @hookimpl
    def vendo_register_billing_providers(self, register: Any, kernel: Any) -> None:
        register("acme", Acme(kernel, self.api))


class Bench:
    """A migrated kernel with ``acme``, the Memento catalog and an HTTP client."""

    def __init__(self, kernel: Any, clock: FrozenClock) -> None:
        from fastapi.testclient import TestClient

        from vendo import create_app
        from vendo.entitlements.catalog import load_catalog

        self.kernel, self.clock = kernel, clock
        kernel.entitlements.load_catalog(load_catalog(CATALOG))
        self.acme = kernel.billing.provider("acme")[1]
        self.client = TestClient(create_app(kernel))
        self.client.__enter__()

    def event(self, id: str, type: str, *, minutes: float = 0, **fields: Any) -> dict[str, Any]:
        values = {"subject": SUBJECT, "customer_id": "cus_1", "subscription_id": "sub_1", **fields}
        return event_to_json(BillingEvent(id=id, type=type, occurred_at=self.clock() + timedelta(minutes=minutes),
                                          **values))

    def deliver(self, *events: dict[str, Any], at: int | None = None, tamper: bool = False) -> Any:
        body = json.dumps({"events": list(events)}).encode()
        headers = self.acme.sign(body, at)
        if tamper:
            body = body.replace(b"pro", b"enterprise")
        return self.client.post("/api/v1/billing/webhooks/acme", content=body, headers=headers)

    def plan(self) -> str:
        return self.kernel.entitlements.entitlements(SUBJECT)["plan"]

    def sub(self) -> Subscription | None:
        with self.kernel.session() as session:
            return session.get(Subscription, ("acme", "sub_1"))

    def count(self, model: Any, **where: Any) -> int:
        with self.kernel.session() as session:
            query = select(func.count()).select_from(model)
            for name, value in where.items():
                query = query.where(getattr(model, name) == value)
            return session.scalar(query)

    def outbox(self, type: str) -> list[dict[str, Any]]:
        with self.kernel.session() as session:
            return [e.payload for e in session.scalars(select(OutboxEvent).where(OutboxEvent.type == type))]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def bench(migrated_kernel, clock) -> Any:
    kernel = migrated_kernel({"acme": AcmePlugin(f"http://127.0.0.1:{closed_port()}")}, clock=clock,
                             secret_key="billing-machine-tests-master-secret-000000")
    kernel.providers.configure(kernel.settings.providers)
    made = Bench(kernel, clock)
    yield made
    made.client.__exit__(None, None, None)


def test_same_event_three_times_and_out_of_order_is_processed_once(bench):
    created = bench.event("evt_1", "subscription.created", plan="pro", status="active", minutes=0)
    upgraded = bench.event("evt_3", "subscription.updated", plan="business", status="active", minutes=2)
    older = bench.event("evt_2", "subscription.updated", plan="pro", status="past_due", minutes=1)
    for event in (upgraded, created, older, upgraded, created, older, older, created, upgraded):
        response = bench.deliver(event)
        assert response.status_code == 200, response.text
    assert bench.sub().plan == "business" and bench.sub().status == "active"
    assert bench.plan() == "business"
    assert bench.count(WebhookEvent) == 3 and bench.count(WebhookEvent, status="processed") == 3
    with bench.kernel.session() as session:
        outcomes = {r.event_id: (r.outcome, r.attempts) for r in session.scalars(select(WebhookEvent))}
    assert outcomes == {"evt_3": ("applied", 1), "evt_1": ("stale", 1), "evt_2": ("stale", 1)}
    changed = bench.outbox("billing.subscription.changed")
    assert len(changed) == 1 and changed[0]["plan"] == "business" and changed[0]["previous_plan"] is None
    last = bench.deliver(upgraded).json()["received"]
    assert last == [{"id": "evt_3", "type": "subscription.updated", "status": "processed", "outcome": "duplicate"}]


def test_the_same_event_delivered_concurrently_applies_once(bench):
    event = bench.event("evt_c", "checkout.completed", plan="pro", status="active", checkout_id="cs_1",
                        data={"email": "buyer@example.com"})
    body = json.dumps({"events": [event]}).encode()
    headers = {k.lower(): v for k, v in bench.acme.sign(body).items()}
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            asyncio.run(bench.kernel.billing.ingest("acme", headers, body))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert bench.count(WebhookEvent) == 1 and len(bench.outbox("billing.checkout.completed")) == 1
    assert bench.plan() == "pro"
    with bench.kernel.session() as session:
        assert session.get(BillingCustomer, ("acme", "cus_1")).email == "buyer@example.com"


@pytest.mark.parametrize("case", ["tampered", "stale", "missing"])
def test_bad_or_stale_signature_is_400_and_stores_nothing(bench, case):
    event = bench.event("evt_x", "subscription.created", plan="pro", status="active")
    if case == "missing":
        response = bench.client.post("/api/v1/billing/webhooks/acme", content=json.dumps({"events": [event]}))
    else:
        at = int(bench.clock().timestamp()) - 301 if case == "stale" else None
        response = bench.deliver(event, at=at, tamper=case == "tampered")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_signature"
    assert bench.count(WebhookEvent) == 0 and bench.sub() is None and bench.plan() == "basic"
    assert bench.outbox("billing.subscription.changed") == []


def test_unknown_provider_is_404(bench):
    response = bench.client.post("/api/v1/billing/webhooks/nope", content=b"{}")
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_provider"


def test_payment_failed_keeps_entitlements_for_the_grace_period_then_restricts(bench, clock):
    bench.deliver(bench.event("evt_co", "checkout.completed", plan="pro", status="active", checkout_id="cs_1",
                              data={"email": "owner@example.com"}))
    assert bench.plan() == "pro"
    clock.advance(days=30)
    failed = bench.deliver(bench.event("evt_pf", "payment.failed", invoice_id="in_2", amount=990, currency="eur"))
    assert failed.status_code == 200, failed.text
    sub = bench.sub()
    assert sub.status == "past_due" and sub.grace_until == clock() + timedelta(days=7)
    assert bench.plan() == "pro"  # kept during the grace period
    (payload,) = bench.outbox("billing.payment.failed")
    assert payload["grace_until"] == (clock() + timedelta(days=7)).isoformat() and payload["invoice_id"] == "in_2"
    (mail,) = bench.outbox("notification.requested")
    assert mail["template"] == "payment_failed" and mail["to"] == "owner@example.com"
    clock.advance(days=6, hours=23)
    assert bench.plan() == "pro"
    clock.advance(hours=2)
    assert bench.plan() == "basic"  # restricted after the grace period
    paid = bench.deliver(bench.event("evt_ip", "invoice.paid", invoice_id="in_2", amount=990, currency="eur",
                                     current_period_end=clock() + timedelta(days=30)))
    assert paid.status_code == 200
    assert bench.sub().status == "active" and bench.sub().grace_until is None and bench.plan() == "pro"
    statuses = [(c["previous_status"], c["status"]) for c in bench.outbox("billing.subscription.changed")]
    assert ("active", "past_due") in statuses and ("past_due", "active") in statuses
    audited = [(a["action"], a["target_id"]) for a in bench.kernel.audit.query(SUBJECT, action="billing")]
    assert ("billing.payment.failed", "in_2") in audited and ("billing.invoice.paid", "in_2") in audited
    (failure,) = bench.kernel.audit.query(SUBJECT, action="billing.payment.failed")
    assert failure["details"]["grace_until"] == payload["grace_until"] and failure["actor_label"] == "billing:acme"


def test_the_payment_failed_email_goes_to_the_workspace_owner_once(bench):
    with bench.kernel.session() as session:
        owner = bench.kernel.identity.create_user(session, "olive@example.com", name="Olive")
        team = bench.kernel.identity.create_workspace(session, owner.id, "Olive's team").id
    bench.deliver(bench.event("evt_co", "checkout.completed", subject=team, plan="pro", status="active",
                              checkout_id="cs_1", data={"email": "buyer@example.com"}))
    failed = bench.event("evt_pf", "payment.failed", subject=team, invoice_id="in_2", minutes=1)
    assert bench.deliver(failed).status_code == 200
    assert bench.deliver(failed).status_code == 200  # a redelivery
    (mail,) = bench.outbox("notification.requested")
    assert mail == {"channel": "email", "to": "olive@example.com", "template": "payment_failed",
                    "context": {"workspace": "Olive's team", "plan": "pro",
                                "grace_until": (bench.clock() + timedelta(minutes=1, days=7)).isoformat(),
                                "portal_url": None},
                    "idempotency_key": "billing:acme:evt_pf:payment_failed"}
    assert len(bench.outbox("billing.payment.failed")) == 1


@pytest.mark.parametrize("email", [None, "not an address"])
def test_without_a_usable_address_the_failure_applies_without_email(bench, email):
    data = {"email": email} if email else {}
    bench.deliver(bench.event("evt_co", "checkout.completed", plan="pro", status="active", checkout_id="cs_1",
                              data=data))
    with bench.kernel.session() as session:
        assert session.get(BillingCustomer, ("acme", "cus_1")).email == email  # the only address known
    failed = bench.deliver(bench.event("evt_pf", "payment.failed", invoice_id="in_2", minutes=1))
    assert failed.status_code == 200, failed.text
    assert bench.sub().status == "past_due" and len(bench.outbox("billing.payment.failed")) == 1
    assert bench.outbox("notification.requested") == []


def test_grace_period_is_a_kernel_setting(migrated_kernel, clock):
    kernel = migrated_kernel({"acme": AcmePlugin("http://127.0.0.1:9")}, clock=clock, billing={"grace_days": 2},
                             secret_key="billing-machine-tests-master-secret-000000")
    kernel.providers.configure(kernel.settings.providers)
    bench = Bench(kernel, clock)
    try:
        bench.deliver(bench.event("evt_a", "subscription.created", plan="pro", status="active"))
        bench.deliver(bench.event("evt_b", "payment.failed", invoice_id="in_1"))
        assert bench.sub().grace_until == clock() + timedelta(days=2)
    finally:
        bench.client.__exit__(None, None, None)


def test_a_failing_event_is_kept_for_retry_never_half_applied_then_replayed(bench, database_url, tmp_path):
    from vendo.entitlements.catalog import load_catalog, parse_catalog

    event = bench.event("evt_pl", "subscription.created", plan="platinum", status="active")
    response = bench.deliver(event)
    assert response.status_code == 500 and response.json()["error"]["code"] == "billing_event_failed"
    with bench.kernel.session() as session:
        row = session.scalar(select(WebhookEvent))
        assert (row.status, row.attempts) == ("failed", 1) and "unknown plan 'platinum'" in row.error
        assert json.loads(row.body)["events"][0]["id"] == "evt_pl"  # the raw body was kept
    assert bench.sub() is None and bench.outbox("billing.subscription.changed") == []  # nothing half-applied
    assert bench.deliver(event).status_code == 500  # a redelivery retries (and fails again)
    assert bench.kernel.billing.events(status="failed")[0]["attempts"] == 2

    catalog = load_catalog(CATALOG).model_dump(mode="json")
    catalog["plans"]["platinum"] = {**catalog["plans"]["enterprise"], "id": "platinum", "name": "Platinum"}
    bench.kernel.entitlements.load_catalog(parse_catalog(catalog))
    env = {"VENDO_DATABASE_URL": database_url, "VENDO_DATA_DIR": str(tmp_path / "cli"),
           "VENDO_PLUGINS__AUTOLOAD": "false"}
    listed = vendo_cli("billing", "events", "--status", "failed", env=env)
    assert listed.returncode == 0 and "evt_pl" in listed.stdout and "failed" in listed.stdout
    replayed = vendo_cli("billing", "replay", "evt_pl", env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert "processed, applied" in replayed.stdout
    assert bench.sub().plan == "platinum" and bench.plan() == "platinum"
    again = vendo_cli("billing", "replay", "evt_pl", env=env)
    assert again.returncode == 1 and again.stderr.strip() == "error: billing event 'evt_pl' was already processed"
    unknown = vendo_cli("billing", "replay", "evt_nope", env=env)
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: no billing event")


def test_refund_and_invoices_are_recorded(bench):
    bench.deliver(bench.event("evt_1", "subscription.created", plan="pro", status="active"))
    bench.deliver(bench.event("evt_2", "invoice.paid", invoice_id="in_1", amount=990, currency="eur"))
    bench.deliver(bench.event("evt_3", "refund.created", invoice_id="in_1", amount=500, currency="eur",
                              checkout_id="cs_1"))
    (refund,) = bench.outbox("billing.refund.created")
    assert refund == {"provider": "acme", "subject": SUBJECT, "subscription_id": "sub_1", "checkout_id": "cs_1",
                      "invoice_id": "in_1", "amount": 500, "currency": "eur", "amount_paid": 990,
                      "amount_refunded_total": 500, "fully_refunded": False, "payment": None}
    bench.deliver(bench.event("evt_4", "refund.created", invoice_id="in_1", amount=490, currency="eur", minutes=1))
    rest = bench.outbox("billing.refund.created")[-1]
    assert (rest["amount"], rest["amount_refunded_total"], rest["fully_refunded"]) == (490, 990, True)
    from vendo.billing.models import BillingInvoice

    with bench.kernel.session() as session:
        invoice = session.get(BillingInvoice, ("acme", "in_1"))
        assert (invoice.status, invoice.amount, invoice.amount_refunded) == ("paid", 990, 990)


def test_a_refund_naming_only_the_customer_finds_its_subject_and_subscription(bench):
    bench.deliver(bench.event("evt_co", "checkout.completed", plan="pro", status="active", checkout_id="cs_1",
                              data={"email": "owner@example.com"}))
    only_customer = {"subject": None, "subscription_id": None, "customer_id": "cus_1"}
    charge = bench.deliver(bench.event("evt_r1", "refund.created", amount=300, currency="eur",
                                       data={"payment_intent": "pi_1"}, **only_customer))
    assert charge.status_code == 200, charge.text
    assert bench.outbox("billing.refund.created") == [
        {"provider": "acme", "subject": SUBJECT, "subscription_id": "sub_1", "checkout_id": None,
         "invoice_id": None, "amount": 300, "currency": "eur", "amount_paid": None, "amount_refunded_total": None,
         "fully_refunded": None, "payment": "pi_1"}]
    # a vendor's figures win (Stripe's charge carries its total refunded and whether it is whole)
    bench.deliver(bench.event("evt_r0", "refund.created", amount=700, currency="eur", minutes=1,
                              data={"payment_intent": "pi_1", "amount_paid": 1000, "amount_refunded_total": 1000,
                                    "fully_refunded": True}, **only_customer))
    whole = bench.outbox("billing.refund.created")[-1]
    assert (whole["amount_paid"], whole["amount_refunded_total"], whole["fully_refunded"]) == (1000, 1000, True)
    bench.deliver(bench.event("evt_s2", "subscription.created", plan="business", status="active",
                              subscription_id="sub_2", minutes=1))
    bench.deliver(bench.event("evt_r2", "refund.created", amount=200, currency="eur", minutes=2, **only_customer))
    second = bench.outbox("billing.refund.created")[-1]
    assert (second["subject"], second["subscription_id"]) == (SUBJECT, None), "two subscriptions: not guessed"
    bench.deliver(bench.event("evt_ip", "invoice.paid", subscription_id="sub_2", invoice_id="in_7", amount=2990,
                              currency="eur", minutes=3))
    bench.deliver(bench.event("evt_r3", "refund.created", amount=100, invoice_id="in_7", minutes=4, **only_customer))
    third = bench.outbox("billing.refund.created")[-1]
    assert (third["subscription_id"], third["currency"]) == ("sub_2", "eur"), "the invoice names the subscription"


def test_a_refund_finds_the_subject_from_a_customer_known_only_by_its_subscription(bench):
    bench.deliver(bench.event("evt_s", "subscription.created", plan="pro", status="active", subject="ws_solo",
                              customer_id="cus_9", subscription_id="sub_9"))
    assert bench.count(BillingCustomer, customer_id="cus_9") == 0
    bench.deliver(bench.event("evt_r", "refund.created", amount=990, currency="eur", subject=None,
                              subscription_id=None, customer_id="cus_9", minutes=1))
    (refund,) = bench.outbox("billing.refund.created")
    assert (refund["subject"], refund["subscription_id"]) == ("ws_solo", "sub_9")
    unknown = bench.deliver(bench.event("evt_u", "refund.created", amount=1, currency="eur", subject=None,
                                        subscription_id=None, customer_id="cus_nobody", minutes=2))
    assert unknown.status_code >= 400
    assert bench.count(WebhookEvent, event_id="evt_u", status="failed") == 1, "kept for a retry"
    assert len(bench.outbox("billing.refund.created")) == 1


def test_cancellation_event_restricts_at_once(bench):
    bench.deliver(bench.event("evt_1", "subscription.created", plan="business", status="active"))
    bench.deliver(bench.event("evt_2", "subscription.canceled", status="canceled", minutes=1))
    assert bench.sub().status == "canceled" and bench.plan() == "basic"
    audit = bench.kernel.audit.query(SUBJECT, action="billing.subscription.changed")
    assert len(audit) == 2


def test_unreachable_provider_is_502_with_nothing_written(bench):
    with bench.kernel.session() as session:
        owner = bench.kernel.identity.create_user(session, "o@example.com")
        workspace = bench.kernel.identity.create_workspace(session, owner.id, "W").id
        token = bench.kernel.sessions.issue(session, owner.id, "test").access_token
    response = bench.client.post("/api/v1/billing/checkout", json={"plan": "pro", "success_url": "/s",
                                                                  "cancel_url": "/c"},
                                 headers={"Authorization": f"Bearer {token}", "X-Vendo-Workspace": workspace,
                                          "Idempotency-Key": "k"})
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "provider_unavailable"
    assert bench.count(BillingCustomer) == 0 and bench.count(CheckoutRecord) == 0
    assert bench.kernel.audit.query(workspace, action="billing.checkout.started") == []


def vendo_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_") or k.startswith("VENDO_TEST_")}
    environment.update(env)
    return subprocess.run([sys.executable, "-m", "vendo", *args], capture_output=True, text=True, env=environment,
                          timeout=120)


def test_an_invoice_before_its_subscription_is_recorded_then_the_subscription_applies(bench):
    early = bench.deliver(bench.event("evt_inv", "invoice.paid", invoice_id="in_0", amount=990, currency="eur",
                                      minutes=1))
    assert early.status_code == 200 and early.json()["received"][0]["outcome"] == "recorded"
    assert bench.sub() is None and len(bench.outbox("billing.invoice.paid")) == 1
    bench.deliver(bench.event("evt_sub", "subscription.created", plan="pro", status="active"))
    assert bench.sub().status == "active" and bench.plan() == "pro"


@pytest.mark.parametrize("invoice_first", [False, True])
def test_the_zero_invoice_that_opens_a_trial_leaves_it_trialing(bench, clock, invoice_first):
    """Stripe pays a trial's first invoice (0) and sends ``invoice.paid`` in the same second as
    the subscription's creation, in either order: the subscription stays ``trialing`` until a
    real payment converts it."""
    trial_end = clock() + timedelta(days=14)
    created = bench.event("evt_sub", "subscription.created", plan="pro", status="trialing", trial_end=trial_end,
                          current_period_end=trial_end)
    zero = bench.event("evt_in0", "invoice.paid", invoice_id="in_0", amount=0, currency="eur", plan="pro",
                       current_period_end=trial_end)
    for event in ((zero, created) if invoice_first else (created, zero)):
        assert bench.deliver(event).status_code == 200
    assert bench.sub().status == "trialing" and bench.sub().trial_end == trial_end
    outcomes = {e["id"]: e["outcome"] for e in bench.kernel.billing.events()}
    assert outcomes == {"evt_sub": "applied", "evt_in0": "recorded"}
    assert bench.plan() == "pro"
    clock.advance(days=14)
    converted = bench.deliver(bench.event("evt_in1", "invoice.paid", invoice_id="in_1", amount=990, currency="eur",
                                          plan="pro", current_period_end=clock() + timedelta(days=30)))
    assert converted.json()["received"][0]["outcome"] == "applied"
    assert bench.sub().status == "active" and bench.plan() == "pro"
    clock.advance(days=1)
    assert bench.plan() == "pro"


def test_a_checkout_event_without_status_never_overrides_the_subscriptions_own(bench, clock):
    """Stripe's ``checkout.session.completed`` says nothing of the subscription's status; it
    may come after ``customer.subscription.created`` (a trial): the trial stays a trial. Alone,
    it starts the subscription active."""
    trial_end = clock() + timedelta(days=14)
    bench.deliver(bench.event("evt_sub", "subscription.created", plan="pro", status="trialing", trial_end=trial_end))
    done = bench.deliver(bench.event("evt_co", "checkout.completed", plan="pro", checkout_id="cs_1", seats=1,
                                     data={"email": "buyer@example.com"}, minutes=0.5))
    assert done.json()["received"][0]["outcome"] == "applied"
    assert bench.sub().status == "trialing" and bench.plan() == "pro"
    with bench.kernel.session() as session:
        assert session.get(BillingCustomer, ("acme", "cus_1")).email == "buyer@example.com"

    alone = bench.event("evt_co2", "checkout.completed", plan="business", checkout_id="cs_2", subject="ws_other",
                        customer_id="cus_2", subscription_id="sub_2")
    assert bench.deliver(alone).status_code == 200
    with bench.kernel.session() as session:
        assert session.get(Subscription, ("acme", "sub_2")).status == "active"
    assert bench.kernel.entitlements.entitlements("ws_other")["plan"] == "business"


def test_no_checkout_beside_a_running_trial_at_a_provider_that_would_open_a_second_subscription(bench, clock):
    """``acme`` (like Stripe) does not convert a trial by a checkout: a checkout while trying
    a plan is refused, 409, before the provider is asked (it is unreachable here: 502 else)."""
    with bench.kernel.session() as session:
        owner = bench.kernel.identity.create_user(session, "o@example.com")
        workspace = bench.kernel.identity.create_workspace(session, owner.id, "W").id
        token = bench.kernel.sessions.issue(session, owner.id, "test").access_token
    bench.deliver(bench.event("evt_t", "subscription.created", subject=workspace, plan="pro", status="trialing",
                              trial_end=clock() + timedelta(days=14)))
    headers = {"Authorization": f"Bearer {token}", "X-Vendo-Workspace": workspace}
    for plan, code in (("pro", "already_subscribed"), ("business", "subscription_exists")):
        response = bench.client.post("/api/v1/billing/checkout", headers=headers,
                                     json={"plan": plan, "success_url": "/s", "cancel_url": "/c"})
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == code
        assert response.json()["error"]["details"] == {"subscription_id": "sub_1"}
    assert bench.count(CheckoutRecord) == 0


class OtherAcmePlugin:
    """A second provider, ``acme2`` (the active one after a switch of providers)."""

    @hookimpl
    def vendo_register_billing_providers(self, register: Any, kernel: Any) -> None:
        register("acme2", Acme(kernel, f"http://127.0.0.1:{closed_port()}"))


def test_a_subscription_of_another_provider_is_not_changed_through_the_active_one(migrated_kernel, clock):
    """After switching providers, the subscription the old one holds is changed there: change-plan,
    cancel and resume answer 409 ``provider_mismatch`` without asking the active provider."""
    kernel = migrated_kernel({"acme": AcmePlugin(f"http://127.0.0.1:{closed_port()}"), "acme2": OtherAcmePlugin()},
                             clock=clock, providers={"billing": "acme2"},
                             secret_key="billing-machine-tests-master-secret-000000")
    kernel.providers.configure(kernel.settings.providers)
    bench = Bench(kernel, clock)
    try:
        assert kernel.billing.provider()[0] == "acme2"
        with kernel.session() as session:
            owner = kernel.identity.create_user(session, "o@example.com")
            workspace = kernel.identity.create_workspace(session, owner.id, "W").id
            token = kernel.sessions.issue(session, owner.id, "test").access_token
        bench.deliver(bench.event("evt_1", "subscription.created", subject=workspace, plan="pro", status="active",
                                  cancel_at_period_end=True))
        headers = {"Authorization": f"Bearer {token}", "X-Vendo-Workspace": workspace}
        for path, body in (("change-plan", {"plan": "business"}), ("cancel", {}), ("resume", {})):
            response = bench.client.post(f"/api/v1/billing/{path}", json=body, headers=headers)
            assert response.status_code == 409, (path, response.text)
            error = response.json()["error"]
            assert error["code"] == "provider_mismatch" and error["details"] == {"provider": "acme", "active": "acme2"}
        assert kernel.entitlements.entitlements(workspace)["plan"] == "pro"
    finally:
        bench.client.__exit__(None, None, None)
