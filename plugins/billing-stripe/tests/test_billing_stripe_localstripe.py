"""The provider's real SDK calls against localstripe: legacy-Plan subscriptions, cancellation and
resumption, invoices, unknown objects, and real signed webhook deliveries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from billing_stripe_support import WEBHOOK_SECRET, LocalStripe, WebhookReceiver
from vendo import Conflict, InvalidSignature, NotFound


def _subscribe(sdk: Any, *, plan_id: str = "pro", seats: int = 3, card: str = "pm_card_visa",
               subject: str = "ws-1") -> tuple[str, str]:
    """At localstripe: a product, a legacy Plan tagged ``vendo_plan``, a customer paying by
    ``card`` and a subscription carrying the metadata a Vendo checkout gives it."""
    product = sdk.v1.products.create({"name": "Pro", "metadata": {"vendo_plan": plan_id}})
    plan = sdk.v1.plans.create({"product": product.id, "amount": 1200, "currency": "usd", "interval": "month",
                                "metadata": {"vendo_plan": plan_id}})
    customer = sdk.v1.customers.create({"email": "ada@example.com", "payment_method": card,
                                        "invoice_settings": {"default_payment_method": card},
                                        "metadata": {"vendo_subject": subject}})
    subscription = sdk.v1.subscriptions.create({"customer": customer.id,
                                                "items": [{"plan": plan.id, "quantity": seats}],
                                                "metadata": {"vendo_subject": subject, "vendo_plan": plan_id}})
    return customer.id, subscription.id


async def test_get_subscription_reads_a_legacy_plan_subscription(localstripe: LocalStripe, stripe_sdk: Any,
                                                                 make_provider: Any) -> None:
    """Peer: localstripe."""
    customer, subscription = _subscribe(stripe_sdk, seats=3)
    info = await make_provider(localstripe.url).get_subscription(subscription)
    assert (info.id, info.customer_id, info.status, info.plan, info.subject, info.seats) == (
        subscription, customer, "active", "pro", "ws-1", 3)
    assert info.current_period_end is not None and info.current_period_end > datetime.now(UTC)
    assert info.current_period_start is not None and info.current_period_start <= datetime.now(UTC)
    assert info.cancel_at_period_end is False and info.trial_end is None


async def test_unknown_subscription_is_not_found(localstripe: LocalStripe, make_provider: Any) -> None:
    """Peer: localstripe."""
    provider = make_provider(localstripe.url)
    with pytest.raises(NotFound) as caught:
        await provider.get_subscription("sub_doesnotexist")
    assert caught.value.status_code == 404 and caught.value.details["provider"] == "stripe"
    with pytest.raises(NotFound):
        await provider.cancel_subscription("sub_doesnotexist")
    with pytest.raises(NotFound):
        await provider.list_invoices("cus_doesnotexist")


async def test_cancel_at_period_end_then_resume_then_cancel_now(localstripe: LocalStripe, stripe_sdk: Any,
                                                                make_provider: Any) -> None:
    """Peer: localstripe."""
    _customer, subscription = _subscribe(stripe_sdk)
    provider = make_provider(localstripe.url)

    await provider.cancel_subscription(subscription, at_period_end=True)
    held = stripe_sdk.v1.subscriptions.retrieve(subscription)
    assert held.cancel_at_period_end is True and held.status == "active"

    resumed = await provider.resume_subscription(subscription)
    assert resumed.cancel_at_period_end is False and resumed.status == "active"
    assert stripe_sdk.v1.subscriptions.retrieve(subscription).cancel_at_period_end is False
    assert (await provider.resume_subscription(subscription)).status == "active"  # nothing to undo: no call

    await provider.cancel_subscription(subscription, at_period_end=False)
    assert (await provider.get_subscription(subscription)).status == "canceled"
    await provider.cancel_subscription(subscription, at_period_end=False)  # already ended: nothing happens
    with pytest.raises(Conflict) as caught:
        await provider.resume_subscription(subscription)
    assert caught.value.code == "subscription_ended"


async def test_list_invoices_of_a_customer(localstripe: LocalStripe, stripe_sdk: Any, make_provider: Any) -> None:
    """Peer: localstripe (its subscription creation issues and pays the first invoice)."""
    customer, subscription = _subscribe(stripe_sdk, seats=2)
    _other_customer, _ = _subscribe(stripe_sdk, subject="ws-2")
    invoices = await make_provider(localstripe.url).list_invoices(customer)
    assert len(invoices) == 1
    (invoice,) = invoices
    assert invoice.customer_id == customer and invoice.subscription_id == subscription
    assert (invoice.status, invoice.currency, invoice.amount_due, invoice.amount_paid) == ("paid", "usd", 2400, 2400)
    assert invoice.created_at.tzinfo is not None


async def test_signed_deliveries_are_verified_and_translated(localstripe: LocalStripe, stripe_sdk: Any,
                                                             make_provider: Any, receiver: WebhookReceiver) -> None:
    """Peer: localstripe, delivering its signed webhooks to a loopback receiver; the provider
    verifies the captured deliveries (real clock: the signatures are fresh)."""
    localstripe.register_webhook("vendo", receiver.url, WEBHOOK_SECRET)
    customer, subscription = _subscribe(stripe_sdk, seats=4)
    provider = make_provider(localstripe.url)

    created = receiver.wait_for("customer.subscription.created", subscription)
    assert created.headers["Stripe-Signature"].startswith("t=")
    (event,) = provider.parse_webhook(created.headers, created.body)
    assert event.id == created.event["id"] and event.type == "subscription.created"
    assert (event.subject, event.customer_id, event.subscription_id, event.plan, event.seats) == (
        "ws-1", customer, subscription, "pro", 4)
    assert event.status == "active" and event.cancel_at_period_end is False
    assert event.current_period_end is not None and event.occurred_at.tzinfo is not None

    (invoice,) = stripe_sdk.v1.invoices.list({"customer": customer}).data
    paid = receiver.wait_for("invoice.payment_succeeded", invoice.id)
    assert provider.parse_webhook(paid.headers, paid.body) == []  # Vendo reads invoice.paid, not this twin

    customer_created = receiver.wait_for("customer.created", customer)
    assert provider.parse_webhook(customer_created.headers, customer_created.body) == []

    stripe_sdk.v1.subscriptions.cancel(subscription)
    deleted = receiver.wait_for("customer.subscription.deleted", subscription)
    (gone,) = provider.parse_webhook(deleted.headers, deleted.body)
    assert (gone.type, gone.status, gone.subject, gone.subscription_id) == (
        "subscription.canceled", "canceled", "ws-1", subscription)

    with pytest.raises(InvalidSignature):
        provider.parse_webhook(deleted.headers, deleted.body.replace(b"canceled", b"active"))
    with pytest.raises(InvalidSignature):
        make_provider(localstripe.url, webhook_secret="whsec_other").parse_webhook(deleted.headers, deleted.body)


async def test_failed_payment_is_delivered_as_payment_failed(
        localstripe: LocalStripe, stripe_sdk: Any, make_provider: Any, receiver: WebhookReceiver) -> None:
    """Peer: localstripe, with a SEPA debit whose IBAN fails to collect (asynchronously, as SEPA
    does): the signed ``invoice.payment_failed`` delivery becomes ``payment.failed``."""
    localstripe.register_webhook("vendo", receiver.url, WEBHOOK_SECRET, events=["invoice.payment_failed"])
    method = stripe_sdk.v1.payment_methods.create({
        "type": "sepa_debit", "sepa_debit": {"iban": "DE62370400440532013001"},
        "billing_details": {"name": "Ada Lovelace", "email": "ada@example.com"}})
    customer, subscription = _subscribe(stripe_sdk, seats=2, card=method.id)

    (invoice,) = stripe_sdk.v1.invoices.list({"customer": customer}).data
    failed = receiver.wait_for("invoice.payment_failed", invoice.id)
    (event,) = make_provider(localstripe.url).parse_webhook(failed.headers, failed.body)
    assert (event.type, event.customer_id, event.subscription_id, event.invoice_id, event.amount, event.currency) == (
        "payment.failed", customer, subscription, invoice.id, 2400, "usd")
    assert event.plan == "pro" and event.current_period_end is not None
