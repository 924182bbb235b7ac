"""Tables of the billing domain (migration ``vendo_0005``): customers, subscriptions, webhook
events (stored raw before processing), invoices, synced prices and checkout idempotency; and
(``vendo_0009``) the usage reported for usage-based prices."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vendo.db import BigIntPK, Model


class BillingCustomer(Model):
    """A subject (workspace id) as a customer of one billing provider."""

    __tablename__ = "vendo_billing_customers"
    __table_args__ = (UniqueConstraint("provider", "subject"),)

    provider: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    subject: Mapped[str] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime]


class Subscription(Model):
    """A subscription as the state machine last saw it. ``last_event_at`` is the
    ``occurred_at`` of the newest event applied: an older event never overwrites it."""

    __tablename__ = "vendo_billing_subscriptions"

    provider: Mapped[str] = mapped_column(String(40), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), index=True)
    customer_id: Mapped[str | None] = mapped_column(String(255))
    plan: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    seats: Mapped[int] = mapped_column(default=1)
    interval: Mapped[str | None] = mapped_column(String(8))
    currency: Mapped[str | None] = mapped_column(String(3))
    current_period_end: Mapped[datetime | None]
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False)
    trial_end: Mapped[datetime | None]
    grace_until: Mapped[datetime | None]
    scheduled_plan: Mapped[str | None] = mapped_column(String(64))
    #: Since when the subscription bills its current plan (paid status entered or plan changed):
    #: usage-based prices count usage from then on. ``None`` while it bills nothing (a trial).
    billed_since: Mapped[datetime | None]
    last_event_at: Mapped[datetime]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class WebhookEvent(Model):
    """One normalized event of a provider, with the raw body it came in (stored before
    processing). ``status``: received, processed or failed (retry with ``vendo billing replay``)."""

    __tablename__ = "vendo_billing_events"
    __table_args__ = (UniqueConstraint("provider", "event_id"), Index("ix_vendo_billing_events_status", "status"))

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(40))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    event: Mapped[dict[str, Any]] = mapped_column(JSON)
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str | None] = mapped_column(String(40))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)


class BillingInvoice(Model):
    """An invoice as billing events reported it (amounts in minor units)."""

    __tablename__ = "vendo_billing_invoices"

    provider: Mapped[str] = mapped_column(String(40), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), index=True)
    subscription_id: Mapped[str | None] = mapped_column(String(255))
    customer_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int | None] = mapped_column(BigInteger)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str | None] = mapped_column(String(3))
    occurred_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class BillingPrice(Model):
    """The provider's price id of one catalog price (``vendo billing sync-catalog``)."""

    __tablename__ = "vendo_billing_prices"

    provider: Mapped[str] = mapped_column(String(40), primary_key=True)
    lookup_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    price_id: Mapped[str] = mapped_column(String(255))
    synced_at: Mapped[datetime]


class CheckoutRecord(Model):
    """A checkout opened for a subject under an ``Idempotency-Key``: the same key answers the
    same session; the same key with another request is refused."""

    __tablename__ = "vendo_billing_checkouts"

    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    provider: Mapped[str] = mapped_column(String(40))
    request_hash: Mapped[str] = mapped_column(String(64))
    checkout_id: Mapped[str] = mapped_column(String(255))
    url: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class UsageReportState(Model):
    """What of one subscription's metered feature is billed (see :mod:`vendo.billing.usage`):
    the usage recorded since ``counted_since``, of which ``billed_units`` the provider accepted;
    ``pending_*`` is the batch being reported (sent again under the same key until accepted)."""

    __tablename__ = "vendo_billing_usage_reports"

    provider: Mapped[str] = mapped_column(String(40), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    feature: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), index=True)
    counted_since: Mapped[datetime]
    billed_units: Mapped[int] = mapped_column(BigInteger, default=0)
    pending_key: Mapped[str | None] = mapped_column(String(100))
    pending_units: Mapped[int | None] = mapped_column(BigInteger)
    pending_price_key: Mapped[str | None] = mapped_column(String(255))
    #: When the pending batch was cut: its timestamp at the provider, the same on every retry.
    pending_at: Mapped[datetime | None]
    reported_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime]
