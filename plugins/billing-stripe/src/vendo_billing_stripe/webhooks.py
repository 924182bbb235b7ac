"""Stripe webhooks: the ``Stripe-Signature`` check and the translation into Vendo's events.

The signature is Stripe's scheme: ``Stripe-Signature: t=<unix time>,v1=<hex>[,v1=<hex>...]``
where each ``v1`` is HMAC-SHA256 of ``"<t>.<raw body>"`` under the endpoint's signing secret
(``whsec_...``). A delivery is accepted when one ``v1`` matches (compared in constant time) and
``t`` is within the tolerance of now (300 s by default, as Stripe's libraries do).

| Stripe event | Vendo event |
| --- | --- |
| ``checkout.session.completed`` (subscription mode) | ``checkout.completed`` |
| ``customer.subscription.created`` | ``subscription.created`` |
| ``customer.subscription.updated`` | ``subscription.updated`` |
| ``customer.subscription.deleted`` | ``subscription.canceled`` |
| ``invoice.paid`` | ``invoice.paid`` |
| ``invoice.payment_failed`` | ``payment.failed`` |
| ``charge.refunded`` | ``refund.created`` |

Every other type translates to no event.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any, Callable, Mapping

from vendo import BillingEvent, InvalidInput, InvalidSignature

from vendo_billing_stripe import objects as o

SIGNATURE_HEADER = "stripe-signature"


def signature_header(secret: str, body: bytes, at: int) -> str:
    """The ``Stripe-Signature`` value Stripe would send for ``body`` at Unix time ``at``."""
    digest = hmac.new(secret.encode(), str(at).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def verify(headers: Mapping[str, str], body: bytes, secret: str, now: datetime, tolerance: int) -> None:
    """Check the ``Stripe-Signature`` header of a delivery.

    :raises InvalidSignature: header missing or malformed, no matching ``v1`` signature, or a
        timestamp further than ``tolerance`` seconds from ``now``.
    """
    header = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER), None)
    if not header:
        raise InvalidSignature("missing Stripe-Signature header", code="signature_missing")
    stamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                stamp = int(value)
            except ValueError:
                raise InvalidSignature("malformed Stripe-Signature timestamp", code="signature_malformed") from None
        elif key == "v1" and value:
            signatures.append(value)
    if stamp is None or not signatures:
        raise InvalidSignature("malformed Stripe-Signature header (needs t= and v1=)", code="signature_malformed")
    expected = hmac.new(secret.encode(), str(stamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    matched = False
    for candidate in signatures:  # compare against every one, in constant time each
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise InvalidSignature("Stripe-Signature does not match the payload", code="signature_mismatch")
    age = now.timestamp() - stamp
    if abs(age) > tolerance:
        raise InvalidSignature(f"Stripe-Signature timestamp is {int(age)} s away from now "
                               f"(tolerance {tolerance} s)", code="signature_stale",
                               details={"tolerance_seconds": tolerance})


def parse(body: bytes) -> dict[str, Any]:
    """The event object of a verified body.

    :raises InvalidInput: not a JSON Stripe event (``invalid_payload``).
    """
    try:
        event = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput("the webhook body is not JSON", code="invalid_payload") from None
    if (not isinstance(event, dict) or not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str)
            or not isinstance(event.get("created"), int) or not isinstance(o.field(event, "data", "object"), dict)):
        raise InvalidInput("the webhook body is not a Stripe event (id, type, created, data.object)",
                           code="invalid_payload")
    return event


def _base(event: Mapping[str, Any], kind: str) -> dict[str, Any]:
    return {"id": event["id"], "type": kind, "occurred_at": o.timestamp(event["created"])}


def _checkout(event: Mapping[str, Any]) -> list[BillingEvent]:
    session = event["data"]["object"]
    meta = o.metadata(session)
    subject = meta.get("vendo_subject") or o.field(session, "client_reference_id")
    if o.field(session, "mode") != "subscription" or not subject:
        return []  # a one-off payment or a session Vendo did not open
    seats = meta.get("vendo_seats")
    return [BillingEvent(
        **_base(event, "checkout.completed"),
        subject=subject,
        customer_id=o.object_id(o.field(session, "customer")),
        subscription_id=o.object_id(o.field(session, "subscription")),
        plan=meta.get("vendo_plan"),
        seats=int(seats) if seats and seats.isdigit() else None,
        amount=o.field(session, "amount_total"),
        currency=o.field(session, "currency"),
        checkout_id=session["id"],
        data={
            "interval": meta.get("vendo_interval"),
            "price_key": meta.get("vendo_price_key"),
            "email": o.field(session, "customer_details", "email") or o.field(session, "customer_email"),
            "payment_status": o.field(session, "payment_status"),
            "metadata": meta,
        },
    )]


def _subscription(kind: str) -> Callable[[Mapping[str, Any]], list[BillingEvent]]:
    def translate(event: Mapping[str, Any]) -> list[BillingEvent]:
        subscription = event["data"]["object"]
        info = o.subscription_info(subscription)
        previous = o.field(event, "data", "previous_attributes") or {}
        data = {
            "stripe_status": o.field(subscription, "status"),
            "previous_stripe_status": o.field(previous, "status"),
            "cancel_at": o.field(subscription, "cancel_at"),
            "schedule": o.object_id(o.field(subscription, "schedule")),
        }
        if "schedule" in subscription and subscription["schedule"] is None:
            # no schedule (any more): no change waits for the renewal, e.g. a downgrade Vendo
            # scheduled was released or canceled in the Dashboard
            data["scheduled_plan"] = None
        return [BillingEvent(
            **_base(event, kind),
            subject=info.subject,
            customer_id=info.customer_id or None,
            subscription_id=info.id,
            plan=info.plan,
            status=info.status,
            seats=info.seats,
            current_period_end=info.current_period_end,
            cancel_at_period_end=info.cancel_at_period_end,
            trial_end=info.trial_end,
            currency=o.field(subscription, "currency"),
            data=data,
        )]

    return translate


def _invoice(kind: str) -> Callable[[Mapping[str, Any]], list[BillingEvent]]:
    def translate(event: Mapping[str, Any]) -> list[BillingEvent]:
        invoice = event["data"]["object"]
        meta = o.invoice_subscription_metadata(invoice)
        amount = o.field(invoice, "amount_paid" if kind == "invoice.paid" else "amount_due")
        return [BillingEvent(
            **_base(event, kind),
            subject=meta.get("vendo_subject"),
            customer_id=o.object_id(o.field(invoice, "customer")),
            subscription_id=o.invoice_subscription(invoice),
            plan=o.invoice_plan(invoice),
            current_period_end=o.invoice_period_end(invoice),
            amount=amount,
            currency=o.field(invoice, "currency"),
            invoice_id=invoice["id"],
            data={
                "billing_reason": o.field(invoice, "billing_reason"),
                "attempt_count": o.field(invoice, "attempt_count"),
                "next_payment_attempt": o.field(invoice, "next_payment_attempt"),
                "hosted_invoice_url": o.field(invoice, "hosted_invoice_url"),
            },
        )]

    return translate


def _refund(event: Mapping[str, Any]) -> list[BillingEvent]:
    charge = event["data"]["object"]
    total = int(o.field(charge, "amount_refunded") or 0)
    before = o.field(event, "data", "previous_attributes", "amount_refunded")
    return [BillingEvent(
        **_base(event, "refund.created"),
        subject=o.metadata(charge).get("vendo_subject"),
        customer_id=o.object_id(o.field(charge, "customer")),
        amount=total - int(before) if before is not None else total,
        currency=o.field(charge, "currency"),
        invoice_id=o.object_id(o.field(charge, "invoice")),
        data={
            "charge_id": charge["id"],
            "payment_intent": o.object_id(o.field(charge, "payment_intent")),
            "amount_paid": int(o.field(charge, "amount_captured") or o.field(charge, "amount") or 0),
            "amount_refunded_total": total,
            "fully_refunded": bool(o.field(charge, "refunded")),
        },
    )]


#: Stripe event type → translator; the table of the module docstring.
TRANSLATORS: dict[str, Callable[[Mapping[str, Any]], list[BillingEvent]]] = {
    "checkout.session.completed": _checkout,
    "customer.subscription.created": _subscription("subscription.created"),
    "customer.subscription.updated": _subscription("subscription.updated"),
    "customer.subscription.deleted": _subscription("subscription.canceled"),
    "invoice.paid": _invoice("invoice.paid"),
    "invoice.payment_failed": _invoice("payment.failed"),
    "charge.refunded": _refund,
}


def translate(event: Mapping[str, Any]) -> list[BillingEvent]:
    """Vendo's events for one verified Stripe event (none for types Vendo does not use)."""
    translator = TRANSLATORS.get(event["type"])
    return translator(event) if translator else []
