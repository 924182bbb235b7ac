"""Reading Stripe objects (plain JSON dicts or SDK ``StripeObject``\\ s) in Vendo's vocabulary.

Stripe moved fields between API versions (``current_period_end`` from the subscription to its
items in 2025-03-31, ``invoice.subscription`` to ``invoice.parent.subscription_details``...);
webhook payloads use the API version of the endpoint, so every reader here accepts both shapes.
Nothing in this module imports the SDK.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Mapping

from vendo import Invoice, SubscriptionInfo

#: Stripe subscription statuses onto :data:`vendo.SUBSCRIPTION_STATUSES`.
#:
#: ``incomplete`` (first payment not yet through) and ``unpaid`` (retries exhausted, the
#: subscription kept open) become ``past_due``: the kernel's grace period, then restriction,
#: applies. ``paused`` (a trial ended without a payment method, with
#: ``missing_payment_method=pause``) is also ``past_due``: nothing is paid, the subscription
#: still exists and resumes when a card is added. ``incomplete_expired`` (the first payment
#: never succeeded within 23 hours) is ``expired``.
STATUSES: dict[str, str] = {
    "trialing": "trialing",
    "active": "active",
    "past_due": "past_due",
    "unpaid": "past_due",
    "incomplete": "past_due",
    "paused": "past_due",
    "canceled": "canceled",
    "incomplete_expired": "expired",
}

LOOKUP_PREFIX = "vendo:"


def field(obj: Any, *path: str) -> Any:
    """``obj[path[0]][path[1]]...``, or ``None`` where a step is missing or null."""
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def object_id(value: Any) -> str | None:
    """The id of a field that is either an id string or an expanded object."""
    if value is None or isinstance(value, str):
        return value
    return field(value, "id")


def timestamp(value: Any) -> datetime | None:
    """A Stripe Unix timestamp as an aware UTC datetime."""
    if value is None or isinstance(value, bool):
        return None
    return datetime.fromtimestamp(int(value), UTC)


def metadata(obj: Any) -> dict[str, str]:
    """The object's metadata as a plain dict (empty when absent)."""
    value = field(obj, "metadata")
    if value is None:
        return {}
    return {str(k): str(v) for k, v in dict(value).items()}


USAGE_MARK = ":usage:"


def _plan_part(key: str) -> str:
    """A lookup key without the ``:usage:<feature>`` of a usage-based price."""
    return key.split(USAGE_MARK, 1)[0]


def plan_from_lookup_key(key: str | None) -> str | None:
    """The plan of a Vendo lookup key ``vendo:<plan>:v<version>:<interval>:<currency>`` (with
    ``:usage:<feature>`` after it for a usage-based price)."""
    if not key or not key.startswith(LOOKUP_PREFIX):
        return None
    parts = _plan_part(key)[len(LOOKUP_PREFIX):].rsplit(":", 3)
    if len(parts) != 4 or not parts[1].startswith("v"):
        return None
    return parts[0] or None


def version_from_lookup_key(key: str) -> int:
    """The plan version of a Vendo lookup key (0 when it names none)."""
    parts = _plan_part(key).rsplit(":", 3)
    return int(parts[1][1:]) if len(parts) == 4 and parts[1][:1] == "v" and parts[1][1:].isdigit() else 0


def is_metered(price: Any) -> bool:
    """Whether a price bills usage (a metered recurring price) rather than a quantity."""
    return field(price, "recurring", "usage_type") == "metered"


def price_of(item: Any) -> Any:
    """The price of a subscription item or invoice line (``price``, or a legacy ``plan``)."""
    price = field(item, "price")
    if price is None:
        price = field(item, "pricing", "price_details", "price")
    if price is None or isinstance(price, str):
        price = field(item, "plan") if field(item, "plan") is not None else price
    return price


def plan_of_price(price: Any) -> str | None:
    """The Vendo plan a price (or legacy plan) sells: its lookup key, else its metadata."""
    if price is None or isinstance(price, str):
        return None
    return plan_from_lookup_key(field(price, "lookup_key")) or metadata(price).get("vendo_plan")


def first_item(subscription: Any) -> Any:
    """The item billing the plan: the first licensed (not metered) item, else the first one.
    A Vendo subscription has one, plus an item per usage-based price."""
    items = field(subscription, "items", "data") or []
    return next((item for item in items if not is_metered(price_of(item))), items[0] if items else None)


def usage_items(subscription: Any) -> list[Any]:
    """The subscription's metered items (one per usage-based price)."""
    return [item for item in field(subscription, "items", "data") or [] if is_metered(price_of(item))]


def subscription_plan(subscription: Any) -> str | None:
    """The plan a subscription bills now: its price first, the ``vendo_plan`` metadata else."""
    return plan_of_price(price_of(first_item(subscription))) or metadata(subscription).get("vendo_plan")


def period_end(subscription: Any) -> datetime | None:
    """End of the current period (on the item since API 2025-03-31, on the subscription before)."""
    value = field(first_item(subscription), "current_period_end")
    return timestamp(value if value is not None else field(subscription, "current_period_end"))


def period_start(subscription: Any) -> datetime | None:
    """Start of the current period (item first, subscription for older API versions)."""
    value = field(first_item(subscription), "current_period_start")
    return timestamp(value if value is not None else field(subscription, "current_period_start"))


def seats(subscription: Any) -> int:
    """The seat quantity: the first item's quantity (1 when the vendor leaves it out)."""
    quantity = field(first_item(subscription), "quantity")
    if quantity is None:
        quantity = field(subscription, "quantity")
    return int(quantity) if quantity is not None else 1


def status(value: str | None) -> str | None:
    """A Stripe subscription status in Vendo's vocabulary (``None`` stays ``None``)."""
    if value is None:
        return None
    return STATUSES.get(value, "past_due")


def subscription_info(subscription: Any) -> SubscriptionInfo:
    """A Stripe subscription as :class:`vendo.SubscriptionInfo`."""
    return SubscriptionInfo(
        id=subscription["id"],
        customer_id=object_id(field(subscription, "customer")) or "",
        status=status(field(subscription, "status")) or "past_due",
        plan=subscription_plan(subscription),
        subject=metadata(subscription).get("vendo_subject"),
        seats=seats(subscription),
        current_period_start=period_start(subscription),
        current_period_end=period_end(subscription),
        cancel_at_period_end=bool(field(subscription, "cancel_at_period_end")),
        trial_end=timestamp(field(subscription, "trial_end")),
    )


def invoice_subscription(invoice: Any) -> str | None:
    """The subscription an invoice bills (API 2025-03-31+ ``parent``, or the older field)."""
    return object_id(field(invoice, "parent", "subscription_details", "subscription")) or object_id(
        field(invoice, "subscription"))


def invoice_subscription_metadata(invoice: Any) -> dict[str, str]:
    """The metadata of the subscription an invoice bills, as the invoice carries it."""
    for path in (("parent", "subscription_details"), ("subscription_details",)):
        found = metadata(field(invoice, *path))
        if found:
            return found
    return {}


def invoice_lines(invoice: Any) -> list[Any]:
    """The invoice's lines of the first page (Stripe includes up to ten in the object)."""
    return list(field(invoice, "lines", "data") or [])


def invoice_plan(invoice: Any) -> str | None:
    """The plan an invoice bills, from its lines' prices, else the subscription's metadata."""
    for line in invoice_lines(invoice):
        plan = plan_of_price(price_of(line))
        if plan:
            return plan
    return invoice_subscription_metadata(invoice).get("vendo_plan")


def invoice_period_end(invoice: Any) -> datetime | None:
    """The end of the period the invoice pays for: the latest end among its lines."""
    ends = [field(line, "period", "end") for line in invoice_lines(invoice)]
    ends = [end for end in ends if end is not None]
    return timestamp(max(ends)) if ends else None


def invoice(obj: Any) -> Invoice:
    """A Stripe invoice as :class:`vendo.Invoice`."""
    return Invoice(
        id=obj["id"],
        customer_id=object_id(field(obj, "customer")) or "",
        status=field(obj, "status") or "draft",
        currency=field(obj, "currency") or "",
        amount_due=int(field(obj, "amount_due") or 0),
        amount_paid=int(field(obj, "amount_paid") or 0),
        created_at=timestamp(field(obj, "created")) or datetime.fromtimestamp(0, UTC),
        subscription_id=invoice_subscription(obj),
        hosted_url=field(obj, "hosted_invoice_url"),
        pdf_url=field(obj, "invoice_pdf"),
    )
