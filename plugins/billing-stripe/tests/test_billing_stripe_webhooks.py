"""``parse_webhook``: Stripe's signature scheme (tolerance, rotation, tampering) and the
translation of each event type Vendo uses, on payloads in the shape of Stripe's current API
version (``current_period_end`` on items, ``invoice.parent``...), signed here with the endpoint
secret exactly as Stripe signs (the real deliveries of localstripe are tested in
``test_billing_stripe_localstripe.py``). No network peer."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from billing_stripe_support import WEBHOOK_SECRET
from vendo import BILLING_EVENT_TYPES, InvalidInput, InvalidSignature, ProviderNotConfigured
from vendo_billing_stripe.webhooks import signature_header

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
PERIOD_END = int((NOW + timedelta(days=30)).timestamp())


def deliver(event: dict[str, Any], *, at: datetime = NOW, secret: str = WEBHOOK_SECRET) -> tuple[dict[str, str], bytes]:
    body = json.dumps(event).encode()
    return {"Stripe-Signature": signature_header(secret, body, int(at.timestamp()))}, body


def event(kind: str, obj: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    return {"id": "evt_" + kind.replace(".", "_"), "object": "event", "api_version": "2026-09-30.clover",
            "created": int(NOW.timestamp()) - 5, "type": kind, "livemode": False, "data": data}


def price(key: str = "vendo:team:v2:month:usd") -> dict[str, Any]:
    return {"id": "price_team", "object": "price", "lookup_key": key, "currency": "usd",
            "recurring": {"interval": "month"}, "metadata": {"vendo_plan": "team"}}


def subscription(status: str = "active", **changes: Any) -> dict[str, Any]:
    sub = {"id": "sub_1", "object": "subscription", "customer": "cus_1", "status": status, "currency": "usd",
           "cancel_at_period_end": False, "cancel_at": None, "trial_end": None, "schedule": None,
           "metadata": {"vendo_subject": "ws-1", "vendo_plan": "team"},
           "items": {"object": "list", "data": [{"id": "si_1", "object": "subscription_item", "price": price(),
                                                 "quantity": 5, "current_period_start": PERIOD_END - 30 * 86400,
                                                 "current_period_end": PERIOD_END}]}}
    sub.update(changes)
    return sub


def invoice(**changes: Any) -> dict[str, Any]:
    obj = {"id": "in_1", "object": "invoice", "customer": "cus_1", "currency": "usd", "amount_due": 9000,
           "amount_paid": 9000, "status": "paid", "billing_reason": "subscription_cycle", "attempt_count": 1,
           "parent": {"type": "subscription_details", "subscription_details": {
               "subscription": "sub_1", "metadata": {"vendo_subject": "ws-1", "vendo_plan": "team"}}},
           "lines": {"object": "list", "data": [{"id": "il_1", "period": {"start": PERIOD_END - 30 * 86400,
                                                                          "end": PERIOD_END},
                                                 "pricing": {"type": "price_details",
                                                             "price_details": {"price": "price_team"}}}]}}
    obj.update(changes)
    return obj


@pytest.fixture
def provider(make_provider: Any) -> Any:
    return make_provider("http://127.0.0.1:9", clock=lambda: NOW)


# -- signatures ------------------------------------------------------------------------------


def test_signature_within_the_tolerance_is_accepted(provider: Any) -> None:
    body_event = event("customer.subscription.updated", subscription())
    for skew in (timedelta(0), timedelta(seconds=-299), timedelta(seconds=299)):
        headers, body = deliver(body_event, at=NOW + skew)
        assert provider.parse_webhook(headers, body)


def test_stale_or_future_signature_is_rejected(provider: Any) -> None:
    for skew in (timedelta(seconds=-301), timedelta(seconds=301), timedelta(days=-2)):
        headers, body = deliver(event("customer.subscription.updated", subscription()), at=NOW + skew)
        with pytest.raises(InvalidSignature) as caught:
            provider.parse_webhook(headers, body)
        assert caught.value.code == "signature_stale" and caught.value.status_code == 400


def test_tolerance_is_a_setting(make_provider: Any) -> None:
    headers, body = deliver(event("invoice.paid", invoice()), at=NOW - timedelta(seconds=1000))
    assert make_provider("http://127.0.0.1:9", clock=lambda: NOW, webhook_tolerance=1200).parse_webhook(headers, body)


def test_bad_signatures_are_rejected(provider: Any) -> None:
    headers, body = deliver(event("invoice.paid", invoice()))
    stamp = int(NOW.timestamp())
    bad = {
        "missing": {},
        "empty": {"Stripe-Signature": ""},
        "no v1": {"Stripe-Signature": f"t={stamp}"},
        "no t": {"Stripe-Signature": headers["Stripe-Signature"].split(",", 1)[1]},
        "bad t": {"Stripe-Signature": "t=soon," + headers["Stripe-Signature"].split(",", 1)[1]},
        "other secret": deliver(event("invoice.paid", invoice()), secret="whsec_other")[0],
        "v0 only": {"Stripe-Signature": headers["Stripe-Signature"].replace("v1=", "v0=")},
    }
    for name, value in bad.items():
        with pytest.raises(InvalidSignature):
            provider.parse_webhook(value, body)
            pytest.fail(name)
    with pytest.raises(InvalidSignature) as caught:
        provider.parse_webhook(headers, body + b" ")
    assert caught.value.code == "signature_mismatch"


def test_any_of_several_v1_signatures_may_match(provider: Any) -> None:
    """During a secret roll Stripe signs with the old and the new secret."""
    headers, body = deliver(event("invoice.paid", invoice()))
    old = signature_header("whsec_old", body, int(NOW.timestamp())).split(",", 1)[1]
    rolled = {"stripe-signature": f"{headers['Stripe-Signature']},{old}"}  # header names are case-insensitive
    assert provider.parse_webhook(rolled, body)
    reversed_order = {"Stripe-Signature": f"t={int(NOW.timestamp())},{old},{headers['Stripe-Signature'].split(',')[1]}"}
    assert provider.parse_webhook(reversed_order, body)


def test_signed_garbage_is_invalid_input_and_a_missing_secret_is_configuration(provider: Any,
                                                                             make_provider: Any) -> None:
    stamp = int(NOW.timestamp())
    for body in (b"not json", b"[]", json.dumps({"id": "evt", "type": "x"}).encode()):
        with pytest.raises(InvalidInput) as caught:
            provider.parse_webhook({"Stripe-Signature": signature_header(WEBHOOK_SECRET, body, stamp)}, body)
        assert caught.value.code == "invalid_payload"
    headers, body = deliver(event("invoice.paid", invoice()))
    with pytest.raises(ProviderNotConfigured):
        make_provider("http://127.0.0.1:9", clock=lambda: NOW, webhook_secret=None).parse_webhook(headers, body)


# -- translation -----------------------------------------------------------------------------


def test_checkout_session_completed(provider: Any) -> None:
    session = {"id": "cs_test_1", "object": "checkout.session", "mode": "subscription", "customer": "cus_1",
               "subscription": "sub_1", "client_reference_id": "ws-1", "amount_total": 9000, "currency": "usd",
               "payment_status": "paid", "customer_details": {"email": "ada@example.com"},
               "metadata": {"vendo_subject": "ws-1", "vendo_plan": "team", "vendo_interval": "month",
                            "vendo_seats": "5", "vendo_price_key": "vendo:team:v2:month:usd"}}
    (completed,) = provider.parse_webhook(*deliver(event("checkout.session.completed", session)))
    assert completed.id == "evt_checkout_session_completed" and completed.type == "checkout.completed"
    assert completed.occurred_at == NOW - timedelta(seconds=5)
    assert (completed.subject, completed.plan, completed.seats, completed.customer_id, completed.subscription_id,
            completed.checkout_id, completed.amount, completed.currency) == (
        "ws-1", "team", 5, "cus_1", "sub_1", "cs_test_1", 9000, "usd")
    assert completed.data["email"] == "ada@example.com" and completed.data["interval"] == "month"
    assert completed.data["price_key"] == "vendo:team:v2:month:usd"

    # the subject may come from client_reference_id alone; one-off payments are not Vendo's
    bare = {**session, "metadata": {}}
    (only_reference,) = provider.parse_webhook(*deliver(event("checkout.session.completed", bare)))
    assert only_reference.subject == "ws-1" and only_reference.plan is None and only_reference.seats is None
    assert provider.parse_webhook(*deliver(event("checkout.session.completed", {**session, "mode": "payment"}))) == []
    anonymous = {**bare, "client_reference_id": None}
    assert provider.parse_webhook(*deliver(event("checkout.session.completed", anonymous))) == []


@pytest.mark.parametrize(("stripe_type", "vendo_type"), [
    ("customer.subscription.created", "subscription.created"),
    ("customer.subscription.updated", "subscription.updated"),
    ("customer.subscription.deleted", "subscription.canceled"),
])
def test_subscription_events(provider: Any, stripe_type: str, vendo_type: str) -> None:
    sub = subscription("canceled" if vendo_type == "subscription.canceled" else "trialing",
                       trial_end=PERIOD_END, cancel_at_period_end=True)
    (translated,) = provider.parse_webhook(*deliver(event(stripe_type, sub, previous={"status": "active"})))
    assert translated.type == vendo_type
    assert (translated.subject, translated.customer_id, translated.subscription_id, translated.plan,
            translated.seats) == ("ws-1", "cus_1", "sub_1", "team", 5)
    assert translated.status == ("canceled" if vendo_type == "subscription.canceled" else "trialing")
    assert translated.current_period_end == datetime.fromtimestamp(PERIOD_END, UTC)
    assert translated.trial_end == datetime.fromtimestamp(PERIOD_END, UTC)
    assert translated.cancel_at_period_end is True
    assert translated.data["previous_stripe_status"] == "active"


@pytest.mark.parametrize(("stripe_status", "vendo_status"), [
    ("trialing", "trialing"), ("active", "active"), ("past_due", "past_due"), ("unpaid", "past_due"),
    ("incomplete", "past_due"), ("paused", "past_due"), ("canceled", "canceled"), ("incomplete_expired", "expired"),
])
def test_statuses_map_onto_vendos(provider: Any, stripe_status: str, vendo_status: str) -> None:
    (translated,) = provider.parse_webhook(*deliver(event("customer.subscription.updated",
                                                          subscription(stripe_status))))
    assert translated.status == vendo_status and translated.data["stripe_status"] == stripe_status


def test_plan_comes_from_the_price_before_the_metadata(provider: Any) -> None:
    """After a scheduled downgrade the price is the truth, even if metadata lagged behind."""
    sub = subscription(metadata={"vendo_subject": "ws-1", "vendo_plan": "team"})
    sub["items"]["data"][0]["price"] = {**price("vendo:pro:v1:month:usd"), "metadata": {}}
    (translated,) = provider.parse_webhook(*deliver(event("customer.subscription.updated", sub)))
    assert translated.plan == "pro"
    sub["items"]["data"][0]["price"] = {"id": "price_x", "lookup_key": None, "metadata": {}}
    (translated,) = provider.parse_webhook(*deliver(event("customer.subscription.updated", sub)))
    assert translated.plan == "team"  # a price Vendo did not create: the subscription's metadata


def test_a_subscription_without_schedule_has_no_scheduled_plan(provider: Any) -> None:
    """A downgrade waits in a Subscription Schedule; once the subscription has none (released at
    the renewal, or canceled in the Dashboard) the event says no change is scheduled."""
    (free,) = provider.parse_webhook(*deliver(event("customer.subscription.updated", subscription(schedule=None))))
    assert "scheduled_plan" in free.data and free.data["scheduled_plan"] is None
    (held,) = provider.parse_webhook(*deliver(event("customer.subscription.updated",
                                                    subscription(schedule="sub_sched_1"))))
    assert "scheduled_plan" not in held.data and held.data["schedule"] == "sub_sched_1"
    unknown = subscription()
    del unknown["schedule"]  # a payload that does not say: nothing is assumed
    (silent,) = provider.parse_webhook(*deliver(event("customer.subscription.updated", unknown)))
    assert "scheduled_plan" not in silent.data


def test_older_api_versions_carry_periods_on_the_subscription(provider: Any) -> None:
    sub = subscription(current_period_end=PERIOD_END + 60)
    del sub["items"]["data"][0]["current_period_end"]
    (translated,) = provider.parse_webhook(*deliver(event("customer.subscription.updated", sub)))
    assert translated.current_period_end == datetime.fromtimestamp(PERIOD_END + 60, UTC)


def test_invoice_paid_and_payment_failed(provider: Any) -> None:
    (paid,) = provider.parse_webhook(*deliver(event("invoice.paid", invoice())))
    assert (paid.type, paid.subject, paid.customer_id, paid.subscription_id, paid.invoice_id, paid.amount,
            paid.currency, paid.plan) == ("invoice.paid", "ws-1", "cus_1", "sub_1", "in_1", 9000, "usd", "team")
    assert paid.current_period_end == datetime.fromtimestamp(PERIOD_END, UTC)

    unpaid = invoice(status="open", amount_paid=0, attempt_count=2, next_payment_attempt=PERIOD_END)
    (failed,) = provider.parse_webhook(*deliver(event("invoice.payment_failed", unpaid)))
    assert (failed.type, failed.amount, failed.subscription_id, failed.subject) == (
        "payment.failed", 9000, "sub_1", "ws-1")
    assert failed.data["attempt_count"] == 2 and failed.data["next_payment_attempt"] == PERIOD_END

    legacy = invoice(subscription="sub_9", subscription_details={"metadata": {"vendo_subject": "ws-9"}})
    del legacy["parent"]
    (old_shape,) = provider.parse_webhook(*deliver(event("invoice.paid", legacy)))
    assert (old_shape.subscription_id, old_shape.subject, old_shape.plan) == ("sub_9", "ws-9", None)


def test_charge_refunded_names_the_refunded_amount(provider: Any) -> None:
    charge = {"id": "ch_1", "object": "charge", "customer": "cus_1", "amount": 9000, "amount_refunded": 5000,
              "currency": "usd", "refunded": False, "payment_intent": "pi_1", "invoice": "in_1", "metadata": {}}
    (partial,) = provider.parse_webhook(*deliver(event("charge.refunded", charge, previous={"amount_refunded": 2000})))
    assert (partial.type, partial.customer_id, partial.invoice_id, partial.amount, partial.currency) == (
        "refund.created", "cus_1", "in_1", 3000, "usd")
    assert partial.data == {"charge_id": "ch_1", "payment_intent": "pi_1", "amount_paid": 9000,
                            "amount_refunded_total": 5000, "fully_refunded": False}
    (first,) = provider.parse_webhook(*deliver(event("charge.refunded", charge)))
    assert first.amount == 5000


def test_other_event_types_translate_to_nothing(provider: Any) -> None:
    for kind in ("customer.created", "invoice.payment_succeeded", "invoice.created", "payment_intent.succeeded",
                 "price.created", "customer.subscription.trial_will_end"):
        assert provider.parse_webhook(*deliver(event(kind, {"id": "obj_1"}))) == []


def test_every_translated_type_is_a_vendo_type() -> None:
    from vendo_billing_stripe.webhooks import TRANSLATORS

    kinds = {"checkout.session.completed": "checkout.completed", "customer.subscription.created":
             "subscription.created", "customer.subscription.updated": "subscription.updated",
             "customer.subscription.deleted": "subscription.canceled", "invoice.paid": "invoice.paid",
             "invoice.payment_failed": "payment.failed", "charge.refunded": "refund.created"}
    assert set(TRANSLATORS) == set(kinds) and set(kinds.values()) == set(BILLING_EVENT_TYPES)
