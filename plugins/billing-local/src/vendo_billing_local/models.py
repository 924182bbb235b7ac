"""The plugin's tables (migration ``billing_local_0001``): its own ledger of customers,
checkouts, subscriptions, invoices, prices, usage and portal sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vendo import Model


class LocalCustomer(Model):
    """A subject as a local customer."""

    __tablename__ = "billing_local_customers"
    __table_args__ = (UniqueConstraint("subject"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subject: Mapped[str] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime]


class LocalCheckout(Model):
    """A local hosted checkout: ``open`` until its page's Pay button completes it."""

    __tablename__ = "billing_local_checkouts"
    __table_args__ = (UniqueConstraint("idempotency_key"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(300))
    customer_id: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(64))
    plan: Mapped[str] = mapped_column(String(64))
    price_key: Mapped[str | None] = mapped_column(String(255))
    interval: Mapped[str] = mapped_column(String(8))
    currency: Mapped[str] = mapped_column(String(3))
    seats: Mapped[int]
    trial_days: Mapped[int]
    amount: Mapped[int] = mapped_column(BigInteger)
    email: Mapped[str | None] = mapped_column(String(320))
    success_url: Mapped[str] = mapped_column(Text)
    cancel_url: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    subscription_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]


class LocalSubscription(Model):
    """A local subscription (no payment is ever taken)."""

    __tablename__ = "billing_local_subscriptions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(64), index=True)
    plan: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    seats: Mapped[int]
    interval: Mapped[str] = mapped_column(String(8))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)
    current_period_start: Mapped[datetime]
    current_period_end: Mapped[datetime]
    cancel_at_period_end: Mapped[bool]
    trial_end: Mapped[datetime | None]
    scheduled_plan: Mapped[str | None] = mapped_column(String(64))
    scheduled_seats: Mapped[int | None]
    #: The synced price (lookup key) it is billed at; ``None``: the kernel catalog's price.
    price_key: Mapped[str | None] = mapped_column(String(255))
    #: The price of ``scheduled_plan`` from the renewal on.
    scheduled_price_key: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]


class LocalInvoice(Model):
    """An invoice recorded locally (``reason``: subscription_create, subscription_cycle, proration)."""

    __tablename__ = "billing_local_invoices"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(40), index=True)
    subscription_id: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(32))
    currency: Mapped[str] = mapped_column(String(3))
    amount_due: Mapped[int] = mapped_column(BigInteger)
    amount_paid: Mapped[int] = mapped_column(BigInteger)
    #: The checkout whose payment this invoice records (``subscription_create`` invoices).
    checkout_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]


class LocalPrice(Model):
    """A catalog price pushed by ``vendo billing sync-catalog``."""

    __tablename__ = "billing_local_prices"

    lookup_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    price_id: Mapped[str] = mapped_column(String(40))
    unit_amount: Mapped[int] = mapped_column(BigInteger)
    per_seat_amount: Mapped[int] = mapped_column(BigInteger)
    min_seats: Mapped[int]
    created_at: Mapped[datetime]


class LocalUsage(Model):
    """A metered usage report, once per idempotency key."""

    __tablename__ = "billing_local_usage"

    idempotency_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(40))
    feature: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime]
    #: The usage-based price the units bill at (its lookup key), when the kernel said.
    price_key: Mapped[str | None] = mapped_column(String(255))
    #: The invoice that billed these units (``None`` until the period's invoice).
    invoice_id: Mapped[str | None] = mapped_column(String(40))


class LocalPortal(Model):
    """A portal session: its id is the bearer of the page (like a vendor's portal link)."""

    __tablename__ = "billing_local_portals"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(40))
    return_url: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime]


class LocalRefund(Model):
    """Money given back on a paid invoice by an operator (``vendo billing-local refund``).

    The refunds of an invoice never add up to more than its ``amount_paid``; a refund with an
    ``idempotency_key`` already used is the same refund."""

    __tablename__ = "billing_local_refunds"
    __table_args__ = (UniqueConstraint("idempotency_key"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(300))
    invoice_id: Mapped[str] = mapped_column(String(40), index=True)
    subscription_id: Mapped[str | None] = mapped_column(String(40))
    checkout_id: Mapped[str | None] = mapped_column(String(40))
    customer_id: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
