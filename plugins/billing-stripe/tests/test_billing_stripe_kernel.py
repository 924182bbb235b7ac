"""vendo-billing-stripe inside a kernel, over the kernel's HTTP routes, on SQLite and PostgreSQL:
Stripe's own signed deliveries through ``POST /api/v1/billing/webhooks/stripe`` (redelivered,
out of order, tampered, stale), and an owner's checkout, upgrade and downgrade through
``/api/v1/billing/*`` with the provider's requests checked at the peer.

Each test names its peer: localstripe for the webhook deliveries (its real signed ones, as a
registered endpoint receives them), the loopback stand-in for Prices, Checkout Sessions,
Subscription Schedules and subscription updates (localstripe answers 404 to those)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import vendo_billing_stripe
from billing_stripe_support import API_KEY, WEBHOOK_SECRET, LocalStripe, StripeStandIn, WebhookReceiver
from sqlalchemy import func, select
from vendo_billing_stripe.webhooks import signature_header

CATALOG = Path(__file__).resolve().parents[3] / "examples" / "catalogs" / "memento.toml"
WEBHOOK = "/api/v1/billing/webhooks/stripe"


@pytest.fixture
def vendo_database_url(vendo_each_database: str) -> str:
    """A fresh database, once SQLite and once PostgreSQL (vendo-sdk)."""
    return vendo_each_database


class Kernel:
    """A kernel whose billing provider is ``stripe`` at ``api_base``, with the Memento catalog
    (Basic free, Pro, Business, seat-based Enterprise; EUR), its clock frozen at Stripe's (the
    real) time, an owner's workspace and an HTTP client."""

    def __init__(self, vendo_kernel: Any, vendo_client: Any, clock: Any, api_base: str) -> None:
        from vendo.entitlements.catalog import load_catalog

        self.clock = clock
        self.now()
        self.kernel = vendo_kernel({"billing-stripe": vendo_billing_stripe}, providers={"billing": "stripe"},
                                   plugin_settings={"billing-stripe": {
                                       "api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET, "api_base": api_base,
                                       "max_network_retries": 0, "timeout": 5}})
        self.kernel.entitlements.load_catalog(load_catalog(CATALOG), source=str(CATALOG))
        self.client = vendo_client(self.kernel)
        with self.kernel.session() as session:
            owner = self.kernel.identity.create_user(session, "owner@example.com", name="Olive")
            member = self.kernel.identity.create_user(session, "member@example.com")
            self.team = self.kernel.identity.create_workspace(session, owner.id, "Team").id
            _invitation, token = self.kernel.identity.invite(session, owner.id, self.team, member.email, "ADMIN")
            self.kernel.identity.accept_invitation(session, member.id, token)
            self.owner_token = self.kernel.sessions.issue(session, owner.id, "test").access_token
            self.admin_token = self.kernel.sessions.issue(session, member.id, "test").access_token

    def now(self) -> datetime:
        """Set the kernel's clock to Stripe's (the real) time; signatures are checked against it."""
        self.clock.set(datetime.now(UTC))
        return self.clock()

    def post(self, path: str, body: dict[str, Any] | None = None, *, token: str | None = None,
             **headers: str) -> Any:
        auth = {"Authorization": f"Bearer {token or self.owner_token}", "X-Vendo-Workspace": self.team}
        return self.client.post(f"/api/v1/billing/{path}", json=body or {}, headers={**auth, **headers})

    def state(self) -> dict[str, Any]:
        return self.client.get("/api/v1/billing/subscription", headers={
            "Authorization": f"Bearer {self.owner_token}", "X-Vendo-Workspace": self.team}).json()

    def plan(self, subject: str | None = None) -> str:
        return self.kernel.entitlements.entitlements(subject or self.team)["plan"]

    def count(self, model: Any) -> int:
        with self.kernel.session() as session:
            return session.scalar(select(func.count()).select_from(model))

    def outbox(self, type: str) -> list[dict[str, Any]]:
        from vendo.outbox import OutboxEvent

        with self.kernel.session() as session:
            return [e.payload for e in session.scalars(select(OutboxEvent).where(OutboxEvent.type == type))]


def _legacy_subscription(sdk: Any, subject: str, *, plan: str = "pro", seats: int = 1) -> tuple[str, str]:
    """At localstripe: a product, a legacy Plan tagged ``vendo_plan``, a paying customer and a
    subscription carrying the metadata a Vendo checkout gives it."""
    product = sdk.v1.products.create({"name": plan.title(), "metadata": {"vendo_plan": plan}})
    legacy = sdk.v1.plans.create({"product": product.id, "amount": 990, "currency": "eur", "interval": "month",
                                  "metadata": {"vendo_plan": plan}})
    customer = sdk.v1.customers.create({"email": "owner@example.com", "payment_method": "pm_card_visa",
                                        "invoice_settings": {"default_payment_method": "pm_card_visa"},
                                        "metadata": {"vendo_subject": subject}})
    subscription = sdk.v1.subscriptions.create({"customer": customer.id,
                                                "items": [{"plan": legacy.id, "quantity": seats}],
                                                "metadata": {"vendo_subject": subject, "vendo_plan": plan}})
    return customer.id, subscription.id


def test_stripe_deliveries_three_times_and_out_of_order_are_processed_once(
        localstripe: LocalStripe, stripe_sdk: Any, receiver: WebhookReceiver, vendo_kernel: Any, vendo_client: Any,
        vendo_clock: Any) -> None:
    """Peer: localstripe, delivering its real signed webhooks to a loopback receiver; the
    captured deliveries (headers and raw bodies untouched) are then posted to the kernel's
    webhook route, each three times, the newest first."""
    from vendo.billing.models import Subscription, WebhookEvent

    world = Kernel(vendo_kernel, vendo_client, vendo_clock, localstripe.url)
    localstripe.register_webhook("vendo", receiver.url, WEBHOOK_SECRET,
                                 events=["customer.subscription.created", "customer.subscription.deleted"])
    subject = world.team
    _customer, subscription = _legacy_subscription(stripe_sdk, subject, plan="pro", seats=2)
    created = receiver.wait_for("customer.subscription.created", subscription)
    time.sleep(1.1)  # Stripe dates events to the second: the cancellation is a second newer
    stripe_sdk.v1.subscriptions.cancel(subscription)
    deleted = receiver.wait_for("customer.subscription.deleted", subscription)

    # a tampered or stale delivery: 400, nothing stored, nothing changed
    tampered = world.client.post(WEBHOOK, content=created.body.replace(b'"active"', b'"trialing"'),
                                 headers=created.headers)
    assert tampered.status_code == 400 and tampered.json()["error"]["code"] == "signature_mismatch"
    assert set(tampered.json()["error"]) == {"code", "message", "details", "request_id"}
    vendo_clock.set(datetime.now(UTC) + timedelta(seconds=400))
    stale = world.client.post(WEBHOOK, content=created.body, headers=created.headers)
    assert stale.status_code == 400 and stale.json()["error"]["code"] == "signature_stale"
    unsigned = world.client.post(WEBHOOK, content=created.body, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 400 and unsigned.json()["error"]["code"] == "signature_missing"
    assert world.count(WebhookEvent) == 0 and world.count(Subscription) == 0 and world.plan() == "basic"

    # the cancellation arrives first; the older creation, redelivered, never revives it
    outcomes = []
    for delivery in (deleted, created, deleted, created, created, deleted):
        world.now()
        response = world.client.post(WEBHOOK, content=delivery.body, headers=delivery.headers)
        assert response.status_code == 200, response.text
        outcomes.append([(r["type"], r["outcome"]) for r in response.json()["received"]])
    assert outcomes == [[("subscription.canceled", "applied")], [("subscription.created", "stale")],
                        [("subscription.canceled", "duplicate")], [("subscription.created", "duplicate")],
                        [("subscription.created", "duplicate")], [("subscription.canceled", "duplicate")]]
    state = world.state()["subscription"]
    assert (state["provider"], state["id"], state["plan"], state["status"], state["seats"]) == (
        "stripe", subscription, "pro", "canceled", 2)
    assert world.plan() == "basic"
    with world.kernel.session() as session:
        rows = {r.event_id: (r.status, r.outcome, r.attempts, r.body) for r in session.scalars(select(WebhookEvent))}
    assert rows == {created.event["id"]: ("processed", "stale", 1, created.body),
                    deleted.event["id"]: ("processed", "applied", 1, deleted.body)}  # the raw bodies, as received
    (changed,) = world.outbox("billing.subscription.changed")
    assert (changed["status"], changed["previous_status"], changed["subscription_id"]) == (
        "canceled", None, subscription)


def test_owner_checkout_upgrade_and_downgrade_through_the_kernel(stand_in: StripeStandIn, vendo_kernel: Any,
                                                                 vendo_client: Any, vendo_clock: Any) -> None:
    """Peer: the loopback stand-in (Prices, Checkout Sessions, subscription updates and
    Subscription Schedules); the buyer paying the hosted page is the stand-in's
    ``complete_checkout``, whose ``checkout.session.completed`` event is signed as Stripe signs
    and posted to the kernel's webhook route."""
    from vendo.billing.models import BillingCustomer, CheckoutRecord

    world = Kernel(vendo_kernel, vendo_client, vendo_clock, stand_in.url)
    prices = asyncio.run(world.kernel.billing.sync_catalog())  # `vendo billing sync-catalog`
    assert {"vendo:pro:v1:month:eur", "vendo:business:v1:month:eur", "vendo:enterprise:v1:month:eur"} <= set(prices)

    # bad input is refused before Stripe is asked anything
    calls = len(stand_in.requests)
    body = {"success_url": "https://app.test/ok", "cancel_url": "https://app.test/no"}
    unknown = world.post("checkout", {**body, "plan": "platinum"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_plan"
    currency = world.post("checkout", {**body, "plan": "pro", "currency": "jpy"})
    assert currency.status_code == 422 and currency.json()["error"]["code"] == "currency_not_offered"
    admin = world.post("checkout", {**body, "plan": "pro"}, token=world.admin_token)
    assert admin.status_code == 403 and admin.json()["error"]["code"] == "insufficient_role"
    assert len(stand_in.requests) == calls

    opened = world.post("checkout", {**body, "plan": "pro"}, **{"Idempotency-Key": "buy-pro-1"})
    assert opened.status_code == 201, opened.text
    session_id = opened.json()["checkout_id"]
    assert opened.json()["url"] == f"https://checkout.stripe.com/c/pay/{session_id}"
    sent = stand_in.checkout_params[session_id]
    assert sent["metadata"]["vendo_subject"] == world.team and sent["client_reference_id"] == world.team
    assert sent["line_items"] == [{"price": prices["vendo:pro:v1:month:eur"], "quantity": "1"}]

    paid = stand_in.complete_checkout(session_id)
    payload = json.dumps(paid).encode()
    headers = {"Stripe-Signature": signature_header(WEBHOOK_SECRET, payload, int(world.now().timestamp()))}
    for _ in range(3):
        assert world.client.post(WEBHOOK, content=payload, headers=headers).status_code == 200
    subscription = paid["data"]["object"]["subscription"]
    state = world.state()
    assert (state["subscription"]["id"], state["subscription"]["status"], state["entitled_plan"]) == (
        subscription, "active", "pro")
    assert len(world.outbox("billing.checkout.completed")) == 1
    again = world.post("checkout", {**body, "plan": "pro"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_subscribed"

    # upgrade mid-period: Stripe is asked to prorate; the entitlements switch at once
    world.now()
    up = world.post("change-plan", {"plan": "business"})
    assert up.status_code == 200, up.text
    assert up.json()["applies"] == "now" and world.plan() == "business"
    (update,) = [r for r in stand_in.calls("POST", f"/v1/subscriptions/{subscription}") if "items" in r.params]
    assert update.params["proration_behavior"] == "create_prorations"
    assert update.params["items"][0]["price"] == prices["vendo:business:v1:month:eur"]

    # downgrade: a schedule bills Pro from the renewal on; Business stays until then
    down = world.post("change-plan", {"plan": "pro"})
    assert down.status_code == 200, down.text
    assert down.json()["applies"] == "period_end" and world.plan() == "business"
    assert down.json()["subscription"]["scheduled_plan"] == "pro"
    (schedule,) = stand_in.of("subscription_schedule")
    phases = schedule["phases"]
    assert [p["items"][0]["price"] for p in phases] == [prices["vendo:business:v1:month:eur"],
                                                        prices["vendo:pro:v1:month:eur"]]

    # Stripe unreachable: 502 provider_unavailable, nothing written for the new workspace. The
    # stand-in stops listening and drops the SDK's kept-alive connection unanswered.
    stand_in.lose_answer = lambda record: True
    stand_in.close()
    with world.kernel.session() as session:
        late = world.kernel.identity.create_user(session, "late@example.com")
        other = world.kernel.identity.create_workspace(session, late.id, "Late").id
        token = world.kernel.sessions.issue(session, late.id, "test").access_token
    customers, checkouts = world.count(BillingCustomer), world.count(CheckoutRecord)
    unreachable = world.client.post("/api/v1/billing/checkout", json={**body, "plan": "pro"},
                                    headers={"Authorization": f"Bearer {token}", "X-Vendo-Workspace": other,
                                             "Idempotency-Key": "late-1"})
    assert unreachable.status_code == 502, unreachable.text
    assert unreachable.json()["error"]["code"] == "provider_unavailable"
    assert (world.count(BillingCustomer), world.count(CheckoutRecord)) == (customers, checkouts)
    assert world.kernel.audit.query(other, action="billing.checkout.started") == []


def test_a_failed_stripe_payment_keeps_the_plan_for_the_grace_period(
        localstripe: LocalStripe, stripe_sdk: Any, receiver: WebhookReceiver, vendo_kernel: Any, vendo_client: Any,
        vendo_clock: Any) -> None:
    """Peer: localstripe, collecting a SEPA debit whose IBAN fails (asynchronously, as SEPA
    does); its real signed ``customer.subscription.created`` and ``invoice.payment_failed``
    deliveries are posted to the kernel's webhook route: ``past_due``, the plan kept for the
    grace period (7 days), then the free plan."""
    from vendo.billing.models import Subscription

    world = Kernel(vendo_kernel, vendo_client, vendo_clock, localstripe.url)
    localstripe.register_webhook("vendo", receiver.url, WEBHOOK_SECRET,
                                 events=["customer.subscription.created", "invoice.payment_failed"])
    method = stripe_sdk.v1.payment_methods.create({
        "type": "sepa_debit", "sepa_debit": {"iban": "DE62370400440532013001"},
        "billing_details": {"name": "Olive", "email": "owner@example.com"}})
    product = stripe_sdk.v1.products.create({"name": "Pro", "metadata": {"vendo_plan": "pro"}})
    legacy = stripe_sdk.v1.plans.create({"product": product.id, "amount": 990, "currency": "eur",
                                         "interval": "month", "metadata": {"vendo_plan": "pro"}})
    customer = stripe_sdk.v1.customers.create({"email": "owner@example.com", "payment_method": method.id,
                                               "invoice_settings": {"default_payment_method": method.id},
                                               "metadata": {"vendo_subject": world.team}})
    subscription = stripe_sdk.v1.subscriptions.create({"customer": customer.id, "items": [{"plan": legacy.id}],
                                                       "metadata": {"vendo_subject": world.team,
                                                                    "vendo_plan": "pro"}}).id
    (invoice,) = stripe_sdk.v1.invoices.list({"customer": customer.id}).data
    created = receiver.wait_for("customer.subscription.created", subscription)
    failed = receiver.wait_for("invoice.payment_failed", invoice.id)
    for delivery in (created, failed, failed, created):
        world.now()
        response = world.client.post(WEBHOOK, content=delivery.body, headers=delivery.headers)
        assert response.status_code == 200, response.text
    with world.kernel.session() as session:
        sub = session.get(Subscription, ("stripe", subscription))
        assert (sub.status, sub.plan) == ("past_due", "pro")
        grace_until = sub.grace_until
    occurred = datetime.fromtimestamp(failed.event["created"], UTC)
    assert grace_until is not None and abs(grace_until.replace(tzinfo=UTC) - (occurred + timedelta(days=7))) \
        < timedelta(seconds=1)
    assert world.plan() == "pro"  # kept during the grace period
    (notice,) = world.outbox("billing.payment.failed")
    assert (notice["invoice_id"], notice["subscription_id"]) == (invoice.id, subscription)
    (mail,) = [m for m in world.outbox("notification.requested") if m["template"] == "payment_failed"]
    assert mail["to"] == "owner@example.com"  # the workspace's OWNER
    vendo_clock.set(occurred + timedelta(days=7, minutes=1))
    assert world.plan() == "basic"  # restricted after it
