"""The ``local`` billing provider: every method of :class:`vendo.BillingProvider`, no payment.

State lives in the plugin's tables. Whatever happens outside a kernel call (a checkout page
completed, an admin's assignment, a portal click, a renewal) is told to the kernel the way a
vendor would: a webhook body signed with the plugin's secret, handed to
``kernel.billing.ingest("local", headers, body)``.

Webhook format: ``{"events": [<normalized BillingEvent as JSON>]}`` with the header
``Vendo-Local-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``, refused
(``invalid_signature``) when wrong or older than ``tolerance_seconds``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from calendar import monthrange
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Mapping, Sequence

from sqlalchemy import func as sa_func
from sqlalchemy import select

from vendo import (
    BillingEvent,
    CatalogPrice,
    CheckoutRequest,
    CheckoutSession,
    Conflict,
    InvalidInput,
    InvalidSignature,
    Invoice,
    NotFound,
    PortalSession,
    SubscriptionChange,
    SubscriptionInfo,
    UsageReport,
    minor_units,
    parse_lookup_key,
)
from vendo_billing_local.models import (
    LocalCheckout,
    LocalCustomer,
    LocalInvoice,
    LocalPortal,
    LocalPrice,
    LocalRefund,
    LocalSubscription,
    LocalUsage,
)

SIGNATURE_HEADER = "vendo-local-signature"


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def add_interval(moment: datetime, interval: str) -> datetime:
    """``moment`` one month or one year later (the day clamped to the month's length)."""
    months = 12 if interval == "year" else 1
    month = moment.month - 1 + months
    year, month = moment.year + month // 12, month % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, monthrange(year, month)[1]))


def _info(sub: LocalSubscription) -> SubscriptionInfo:
    return SubscriptionInfo(id=sub.id, customer_id=sub.customer_id, status=sub.status, plan=sub.plan,
                            subject=sub.subject, seats=sub.seats, current_period_start=sub.current_period_start,
                            current_period_end=sub.current_period_end, cancel_at_period_end=sub.cancel_at_period_end,
                            trial_end=sub.trial_end)


class LocalBillingProvider:
    """A billing provider that takes no payment. ``kernel``: the kernel it serves;
    ``settings``: :class:`vendo_billing_local.LocalSettings`."""

    name = "local"
    #: Paying a checkout of the plan a subject is trying converts that trial's subscription
    #: (``complete_checkout``) instead of opening a second one: the kernel lets it through.
    converts_trials_by_checkout = True

    def __init__(self, kernel: Any, settings: Any) -> None:
        self._kernel = kernel
        self._settings = settings
        #: The renewal task while ``vendo serve`` runs (see ``vendo_startup``).
        self.renewer: Any = None

    # -- signing -----------------------------------------------------------------------------

    def _secret(self) -> bytes:
        return self._kernel.secrets.derive("billing-local:webhooks")

    def sign(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The headers that make ``body`` a valid delivery (``timestamp``: now by default)."""
        stamp = int(self._kernel.now().timestamp()) if timestamp is None else timestamp
        digest = hmac.new(self._secret(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        return {SIGNATURE_HEADER: f"t={stamp},v1={digest}", "content-type": "application/json"}

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[BillingEvent]:
        """Verify the signature (constant time, within the tolerance) and read the events.

        :raises InvalidSignature: missing, malformed, wrong or stale signature.
        """
        header = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER), None)
        if not header:
            raise InvalidSignature("missing Vendo-Local-Signature header", code="invalid_signature")
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        try:
            stamp = int(parts["t"])
            given = parts["v1"]
        except (KeyError, ValueError):
            raise InvalidSignature("malformed Vendo-Local-Signature header", code="invalid_signature") from None
        expected = hmac.new(self._secret(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, given):
            raise InvalidSignature("webhook signature does not match", code="invalid_signature")
        if abs(self._kernel.now().timestamp() - stamp) > self._settings.tolerance_seconds:
            raise InvalidSignature("webhook signature is too old", code="invalid_signature")
        try:
            return [BillingEvent.from_json(item) for item in json.loads(body)["events"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"unreadable local webhook body: {exc}", code="invalid_webhook") from None

    def delivery(self, *events: BillingEvent) -> tuple[dict[str, str], bytes]:
        """The signed webhook (headers, body) carrying ``events``, as a vendor would send it."""
        body = json.dumps({"events": [e.to_json() for e in events]}, sort_keys=True).encode()
        return self.sign(body), body

    async def _emit(self, *events: BillingEvent) -> list[dict[str, Any]]:
        """Deliver ``events`` to the kernel as a signed webhook (nothing when there are none)."""
        if not events:
            return []
        headers, body = self.delivery(*events)
        return await self._kernel.billing.ingest(self.name, headers, body)

    def _event(self, type: str, sub: LocalSubscription | None = None, **fields: Any) -> BillingEvent:
        values: dict[str, Any] = {"id": _id("levt"), "type": type, "occurred_at": self._kernel.now()}
        if sub is not None:
            values.update(subject=sub.subject, customer_id=sub.customer_id, subscription_id=sub.id, plan=sub.plan,
                          status=sub.status, seats=sub.seats, current_period_end=sub.current_period_end,
                          cancel_at_period_end=sub.cancel_at_period_end, trial_end=sub.trial_end,
                          currency=sub.currency, data={"interval": sub.interval, "currency": sub.currency})
        values.update(fields)
        return BillingEvent(**values)

    # -- prices --------------------------------------------------------------------------------

    def _amount(self, plan_id: str, interval: str, currency: str, seats: int, session: Any = None,
                price_key: str | None = None) -> int:
        """What one period of the plan costs: the price synced under ``price_key`` when there
        is one (what a vendor charges), else the catalog version ``price_key`` names (what the
        subscriber bought), else the kernel's current catalog (read in ``session`` when given: a
        second transaction would wait on SQLite's write lock).

        :raises NotFound: ``unknown_plan`` (neither a synced price nor a catalog plan).
        """
        if price_key:
            if session is not None:
                synced = session.get(LocalPrice, price_key)
            else:
                with self._kernel.session() as own:
                    synced = own.get(LocalPrice, price_key)
            if synced is not None:
                return synced.unit_amount + synced.per_seat_amount * max(seats, synced.min_seats)
        parsed = parse_lookup_key(price_key)
        version = parsed.version if parsed is not None and parsed.feature is None and parsed.plan == plan_id \
            else None
        try:
            plan = self._kernel.entitlements.catalog(version, session).plan(plan_id)
        except NotFound:
            if version is None:
                raise
            plan = self._kernel.entitlements.catalog(None, session).plan(plan_id)  # that version is gone
        price = next((p for p in plan.flat_prices if p.interval == interval and p.currency == currency), None)
        if price is None:
            return 0
        return minor_units(price.amount + price.per_seat * max(seats, price.min_seats), currency)

    # -- customers and checkout ------------------------------------------------------------

    def _customer(self, session: Any, subject: str, email: str | None) -> LocalCustomer:
        customer = session.scalar(select(LocalCustomer).where(LocalCustomer.subject == subject))
        if customer is None:
            customer = LocalCustomer(id=_id("lcus"), subject=subject, email=email, created_at=self._kernel.now())
            session.add(customer)
            session.flush()
        return customer

    async def create_customer(self, subject: str, email: str | None = None) -> str:
        """The subject's local customer id (created once)."""
        with self._kernel.session() as session:
            return self._customer(session, subject, email).id

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        """A local hosted checkout page (same ``idempotency_key``: same page)."""
        amount = self._amount(request.plan, request.interval, request.currency, request.seats,
                              price_key=request.price_key)
        with self._kernel.session() as session:
            if request.idempotency_key:
                found = session.scalar(select(LocalCheckout).where(
                    LocalCheckout.idempotency_key == request.idempotency_key))
                if found is not None:
                    return CheckoutSession(found.id, self._url("checkout", found.id), found.customer_id)
            customer = session.get(LocalCustomer, request.customer_id) if request.customer_id else None
            customer = customer or self._customer(session, request.subject, request.customer_email)
            checkout = LocalCheckout(
                id=_id("lchk"), idempotency_key=request.idempotency_key, customer_id=customer.id,
                subject=request.subject, plan=request.plan, price_key=request.price_key, interval=request.interval,
                currency=request.currency, seats=request.seats, trial_days=request.trial_days, amount=amount,
                email=request.customer_email, success_url=request.success_url, cancel_url=request.cancel_url,
                status="open", created_at=self._kernel.now())
            session.add(checkout)
        return CheckoutSession(checkout.id, self._url("checkout", checkout.id), customer.id)

    def _url(self, kind: str, ident: str) -> str:
        base = self._settings.public_url.rstrip("/")
        if not base:
            server = self._kernel.settings.server
            host = "127.0.0.1" if server.host in ("0.0.0.0", "::", "") else server.host
            base = f"http://{host}:{server.port}"
        return f"{base}/api/v1/billing/local/{kind}/{ident}"

    def checkout(self, checkout_id: str) -> LocalCheckout:
        """A checkout by id.

        :raises NotFound: ``unknown_checkout``.
        """
        with self._kernel.session() as session:
            checkout = session.get(LocalCheckout, checkout_id)
        if checkout is None:
            raise NotFound("unknown checkout", code="unknown_checkout")
        return checkout

    async def complete_checkout(self, checkout_id: str) -> LocalCheckout:
        """The page's Pay button: start (or convert) the subscription, record the invoice and
        tell the kernel (``checkout.completed``, ``invoice.paid``). Completing twice does nothing."""
        checkout, events = self._complete(checkout_id)
        await self._emit(*events)
        return checkout

    def checkout_delivery(self, checkout_id: str) -> tuple[dict[str, str], bytes]:
        """Complete the checkout like :meth:`complete_checkout` but hand back the signed webhook
        (headers, body) instead of ingesting it: what a vendor would send for the paid session.
        A checkout already complete gives an empty delivery (``{"events": []}``)."""
        _checkout, events = self._complete(checkout_id)
        return self.delivery(*events)

    def _complete(self, checkout_id: str) -> tuple[LocalCheckout, list[BillingEvent]]:
        now = self._kernel.now()
        events: list[BillingEvent] = []
        with self._kernel.session() as session:
            checkout = session.scalar(select(LocalCheckout).where(LocalCheckout.id == checkout_id).with_for_update())
            if checkout is None:
                raise NotFound("unknown checkout", code="unknown_checkout")
            if checkout.status != "open":
                return checkout, []
            running = session.scalar(select(LocalSubscription).where(
                LocalSubscription.subject == checkout.subject,
                LocalSubscription.status.in_(("active", "past_due"))).limit(1))
            if running is not None:  # paid meanwhile through another checkout opened alongside this one
                same = running.plan == checkout.plan
                raise Conflict(f"{checkout.subject} is already subscribed to '{running.plan}'" + (
                    "" if same else ": change its plan instead"),
                    code="already_subscribed" if same else "subscription_exists",
                    details={"subscription_id": running.id})
            trialing = session.scalar(select(LocalSubscription).where(
                LocalSubscription.subject == checkout.subject, LocalSubscription.plan == checkout.plan,
                LocalSubscription.status == "trialing"))
            sub = trialing if trialing is not None and not checkout.trial_days else None
            if sub is None:
                sub = LocalSubscription(id=_id("lsub"), customer_id=checkout.customer_id, subject=checkout.subject,
                                        created_at=now, cancel_at_period_end=False)
                session.add(sub)
            trial_end = now + timedelta(days=checkout.trial_days) if checkout.trial_days else None
            sub.plan, sub.seats, sub.interval, sub.currency = checkout.plan, checkout.seats, checkout.interval, \
                checkout.currency
            sub.amount, sub.status, sub.trial_end = checkout.amount, "trialing" if trial_end else "active", trial_end
            sub.price_key = checkout.price_key
            sub.current_period_start = now
            sub.current_period_end = trial_end or add_interval(now, checkout.interval)
            checkout.status, checkout.subscription_id = "complete", sub.id
            session.flush()
            events.append(self._event("checkout.completed", sub, checkout_id=checkout.id, amount=checkout.amount,
                                      data={"interval": sub.interval, "currency": sub.currency,
                                            "email": checkout.email}))
            if not trial_end:
                events.append(self._invoice_paid(session, sub, "subscription_create", checkout_id=checkout.id))
        return checkout, events

    def _invoice_paid(self, session: Any, sub: LocalSubscription, reason: str, amount: int | None = None,
                      checkout_id: str | None = None, usage: Sequence[LocalUsage] = ()) -> BillingEvent:
        value = sub.amount if amount is None else amount
        invoice = LocalInvoice(id=_id("linv"), customer_id=sub.customer_id, subscription_id=sub.id, status="paid",
                               reason=reason, currency=sub.currency, amount_due=value, amount_paid=value,
                               checkout_id=checkout_id, created_at=self._kernel.now())
        session.add(invoice)
        for row in usage:
            row.invoice_id = invoice.id
        return self._event("invoice.paid", sub, invoice_id=invoice.id, amount=value)

    # -- portal --------------------------------------------------------------------------------

    async def create_portal(self, customer_id: str, return_url: str) -> PortalSession:
        """A local portal page for the customer, valid for an hour."""
        with self._kernel.session() as session:
            if session.get(LocalCustomer, customer_id) is None:
                raise NotFound("unknown customer", code="unknown_customer")
            portal = LocalPortal(id=_id("lprt"), customer_id=customer_id, return_url=return_url,
                                 expires_at=self._kernel.now() + timedelta(hours=1))
            session.add(portal)
        return PortalSession(portal.id, self._url("portal", portal.id))

    def portal(self, portal_id: str) -> tuple[LocalPortal, list[LocalSubscription], list[Invoice]]:
        """A live portal session, its customer's subscriptions and invoices.

        :raises NotFound: ``unknown_portal`` (or expired).
        """
        with self._kernel.session() as session:
            portal = session.get(LocalPortal, portal_id)
            if portal is None or portal.expires_at <= self._kernel.now():
                raise NotFound("unknown or expired portal session", code="unknown_portal")
            subs = list(session.scalars(select(LocalSubscription).where(
                LocalSubscription.customer_id == portal.customer_id).order_by(LocalSubscription.created_at.desc())))
        return portal, subs, self._invoices(portal.customer_id)

    async def portal_action(self, portal_id: str, subscription_id: str, action: str) -> None:
        """``cancel`` (at period end) or ``resume`` from the portal page; the kernel hears of it."""
        _portal, subs, _invoices = self.portal(portal_id)
        if subscription_id not in {s.id for s in subs}:
            raise NotFound("unknown subscription", code="unknown_subscription")
        if action == "cancel":
            await self.cancel_subscription(subscription_id, at_period_end=True)
        elif action == "resume":
            await self.resume_subscription(subscription_id)
        else:
            raise InvalidInput(f"unknown portal action {action!r}", code="invalid_action")
        with self._kernel.session() as session:
            sub = session.get(LocalSubscription, subscription_id)
            event = self._event("subscription.updated", sub)
        await self._emit(event)

    # -- subscriptions -------------------------------------------------------------------------

    def _sub(self, session: Any, subscription_id: str) -> LocalSubscription:
        sub = session.scalar(select(LocalSubscription).where(LocalSubscription.id == subscription_id)
                             .with_for_update())
        if sub is None:
            raise NotFound(f"unknown subscription '{subscription_id}'", code="unknown_subscription")
        return sub

    async def get_subscription(self, subscription_id: str) -> SubscriptionInfo:
        """The subscription now."""
        with self._kernel.session() as session:
            return _info(self._sub(session, subscription_id))

    async def change_subscription(self, change: SubscriptionChange) -> SubscriptionInfo:
        """Now: switch plan/seats and record a prorated invoice for the rest of the period;
        at period end: schedule it for the renewal."""
        with self._kernel.session() as session:
            sub = self._sub(session, change.subscription_id)
            plan, seats = change.plan or sub.plan, change.seats or sub.seats
            price_key = (change.price_key if change.plan else sub.price_key) or None
            if change.at_period_end:
                sub.scheduled_plan = plan if plan != sub.plan else None
                sub.scheduled_price_key = price_key if sub.scheduled_plan else None
                sub.scheduled_seats = seats if seats != sub.seats else None
                return _info(sub)
            amount = self._amount(plan, sub.interval, sub.currency, seats, session, price_key=price_key)
            now = self._kernel.now()
            period = (sub.current_period_end - sub.current_period_start).total_seconds()
            left = max(0.0, (sub.current_period_end - now).total_seconds())
            prorated = int(round((amount - sub.amount) * (left / period))) if period > 0 else 0
            sub.plan, sub.seats, sub.amount, sub.price_key = plan, seats, amount, price_key
            sub.scheduled_plan = sub.scheduled_seats = sub.scheduled_price_key = None
            if sub.status == "active" and prorated > 0:
                session.add(LocalInvoice(id=_id("linv"), customer_id=sub.customer_id, subscription_id=sub.id,
                                         status="paid", reason="proration", currency=sub.currency,
                                         amount_due=prorated, amount_paid=prorated, created_at=now))
            return _info(sub)

    async def cancel_subscription(self, subscription_id: str, at_period_end: bool = True) -> None:
        """Cancel at the period end (a flag) or now."""
        with self._kernel.session() as session:
            sub = self._sub(session, subscription_id)
            if at_period_end and sub.status != "trialing":
                sub.cancel_at_period_end = True
            else:
                sub.status, sub.cancel_at_period_end = "canceled", False

    async def resume_subscription(self, subscription_id: str) -> SubscriptionInfo:
        """Undo a cancellation scheduled for the period end."""
        with self._kernel.session() as session:
            sub = self._sub(session, subscription_id)
            if sub.status in ("canceled", "expired"):
                raise InvalidInput("an ended subscription cannot resume", code="subscription_ended")
            sub.cancel_at_period_end = False
            return _info(sub)

    def _invoices(self, customer_id: str) -> list[Invoice]:
        with self._kernel.session() as session:
            rows = session.scalars(select(LocalInvoice).where(LocalInvoice.customer_id == customer_id)
                                   .order_by(LocalInvoice.created_at.desc(), LocalInvoice.id))
            return [Invoice(id=r.id, customer_id=r.customer_id, status=r.status, currency=r.currency,
                            amount_due=r.amount_due, amount_paid=r.amount_paid, created_at=r.created_at,
                            subscription_id=r.subscription_id) for r in rows]

    async def list_invoices(self, customer_id: str) -> list[Invoice]:
        """The customer's local invoices, newest first."""
        return self._invoices(customer_id)

    async def report_usage(self, report: UsageReport) -> None:
        """Record metered usage once per idempotency key; the next period's invoice bills it
        (:meth:`renew`)."""
        if report.quantity < 0:
            raise InvalidInput("usage quantities are positive", code="invalid_input", details={"field": "quantity"})
        with self._kernel.session() as session:
            if session.get(LocalUsage, report.idempotency_key) is None:
                self._sub(session, report.subscription_id)
                session.add(LocalUsage(idempotency_key=report.idempotency_key, subscription_id=report.subscription_id,
                                       feature=report.feature, quantity=report.quantity, at=report.timestamp,
                                       price_key=report.price_key))

    def _unit_price(self, session: Any, sub: LocalSubscription, feature: str,
                    price_key: str | None) -> tuple[Decimal, int]:
        """What one unit of ``feature`` costs ``sub`` and how many units a period includes: the
        usage-based price ``price_key`` names (``vendo:<plan>:v<version>:<interval>:<currency>
        :usage:<feature>``, read in that catalog version), else the subscription plan's in the
        current catalog; ``(0, 0)`` when none bills it."""
        plan_id, version, interval, currency = sub.plan, None, sub.interval, sub.currency
        parsed = parse_lookup_key(price_key)
        if parsed is not None and parsed.feature is not None:
            plan_id, version, interval, currency = parsed.plan, parsed.version, parsed.interval, parsed.currency
        try:
            plan = self._kernel.entitlements.catalog(version, session).plan(plan_id)
        except NotFound:
            return Decimal(0), 0
        price = next((p for p in plan.usage_prices(interval, currency) if p.metered_feature == feature), None)
        return (price.amount, price.included) if price is not None else (Decimal(0), 0)

    def _usage_charge(self, session: Any, sub: LocalSubscription) -> tuple[int, list[LocalUsage]]:
        """The usage of ``sub`` not invoiced yet (the period's), and what it costs: the units
        beyond the included ones at the unit price, in minor units rounded once per price."""
        rows = list(session.scalars(select(LocalUsage).where(LocalUsage.subscription_id == sub.id,
                                                             LocalUsage.invoice_id.is_(None))))
        totals: dict[tuple[str, str | None], int] = {}
        for row in rows:
            totals[(row.feature, row.price_key)] = totals.get((row.feature, row.price_key), 0) + row.quantity
        amount = 0
        for (feature, key), units in totals.items():
            unit, included = self._unit_price(session, sub, feature, key)
            amount += minor_units(unit * max(0, units - included), sub.currency)
        return amount, rows

    def usage(self, subscription_id: str) -> list[LocalUsage]:
        """The usage reported for a subscription, oldest first."""
        with self._kernel.session() as session:
            return list(session.scalars(select(LocalUsage).where(LocalUsage.subscription_id == subscription_id)
                                        .order_by(LocalUsage.at, LocalUsage.idempotency_key)))

    async def sync_catalog(self, prices: list[CatalogPrice]) -> dict[str, str]:
        """Record the prices; the price id is stable per lookup key."""
        out = {}
        with self._kernel.session() as session:
            for price in prices:
                row = session.get(LocalPrice, price.lookup_key)
                if row is None:
                    row = LocalPrice(lookup_key=price.lookup_key,
                                     price_id="lprice_" + hashlib.sha256(price.lookup_key.encode()).hexdigest()[:20],
                                     unit_amount=price.unit_amount, per_seat_amount=price.per_seat_amount,
                                     min_seats=price.min_seats, created_at=self._kernel.now())
                    session.add(row)
                out[price.lookup_key] = row.price_id
        return out

    # -- outside the protocol: manual assignment and renewals ---------------------------------

    async def assign_subscription(self, subject: str, plan: str, *, seats: int = 1, trial_days: int = 0,
                                  interval: str = "month", currency: str = "usd") -> SubscriptionInfo:
        """An administrator puts ``subject`` on ``plan`` without payment (``vendo billing
        assign``): its running subscription changes plan, or a new one starts. The kernel hears
        of it as ``subscription.created``/``updated`` events."""
        now = self._kernel.now()
        amount = self._amount(plan, interval, currency, seats)
        with self._kernel.session() as session:
            customer = self._customer(session, subject, None)
            sub = session.scalar(select(LocalSubscription).where(
                LocalSubscription.subject == subject,
                LocalSubscription.status.in_(("trialing", "active", "past_due"))).with_for_update())
            kind = "subscription.updated" if sub is not None else "subscription.created"
            if sub is None:
                sub = LocalSubscription(id=_id("lsub"), customer_id=customer.id, subject=subject, created_at=now)
                session.add(sub)
            trial_end = now + timedelta(days=trial_days) if trial_days else None
            sub.plan, sub.seats, sub.interval, sub.currency, sub.amount = plan, seats, interval, currency, amount
            sub.price_key = sub.scheduled_price_key = None
            sub.status, sub.trial_end, sub.cancel_at_period_end = ("trialing" if trial_end else "active"), \
                trial_end, False
            sub.scheduled_plan = sub.scheduled_seats = None
            sub.current_period_start, sub.current_period_end = now, trial_end or add_interval(now, interval)
            session.flush()
            events = [self._event(kind, sub, data={"interval": interval, "currency": currency,
                                                   "scheduled_plan": None})]
            if not trial_end:
                events.append(self._invoice_paid(session, sub, "manual"))
            info = _info(sub)
        await self._emit(*events)
        return info

    async def renew(self) -> int:
        """Process every subscription whose period (or trial) ended: cancel those set to
        cancel, end unconverted trials (no card: ``expired``), otherwise apply the scheduled
        change, start the next period and record its invoice (the ended period's usage
        reported first, so the invoice bills all of it). Returns how many moved."""
        now = self._kernel.now()
        with self._kernel.session() as session:
            due = list(session.execute(select(LocalSubscription.id, LocalSubscription.subject).where(
                LocalSubscription.status.in_(("trialing", "active")), LocalSubscription.current_period_end <= now)))
        for subscription_id, subject in due:
            await self._kernel.billing.report_usage(subject)  # failures stay pending for the next run
            events: list[BillingEvent] = []
            with self._kernel.session() as session:
                sub = self._sub(session, subscription_id)
                if sub.current_period_end > now or sub.status not in ("trialing", "active"):
                    continue
                usage, usage_rows = self._usage_charge(session, sub)
                if sub.cancel_at_period_end:
                    if usage > 0:  # the last period's usage, billed in arrears
                        events.append(self._invoice_paid(session, sub, "usage", amount=usage, usage=usage_rows))
                    sub.status, sub.cancel_at_period_end = "canceled", False
                    events.append(self._event("subscription.canceled", sub))
                elif sub.status == "trialing":
                    sub.status = "expired"
                    events.append(self._event("subscription.canceled", sub))
                else:
                    if sub.scheduled_plan or sub.scheduled_seats:
                        if sub.scheduled_plan:
                            sub.plan, sub.price_key = sub.scheduled_plan, sub.scheduled_price_key
                        sub.seats = sub.scheduled_seats or sub.seats
                        sub.amount = self._amount(sub.plan, sub.interval, sub.currency, sub.seats, session,
                                                  price_key=sub.price_key)
                        sub.scheduled_plan = sub.scheduled_seats = sub.scheduled_price_key = None
                    while sub.current_period_end <= now:
                        sub.current_period_start = sub.current_period_end
                        sub.current_period_end = add_interval(sub.current_period_end, sub.interval)
                    events.append(self._event("subscription.updated", sub, data={
                        "interval": sub.interval, "currency": sub.currency, "scheduled_plan": None}))
                    # the new period in advance, the ended period's usage in arrears
                    events.append(self._invoice_paid(session, sub, "subscription_cycle", amount=sub.amount + usage,
                                                     usage=usage_rows))
            await self._emit(*events)
        return len(due)

    # -- outside the protocol: refunds -------------------------------------------------------

    async def refund(self, target: str, amount: int | None = None, *, idempotency_key: str | None = None,
                     reason: str | None = None) -> tuple[LocalRefund, bool]:
        """An operator gives money back (``vendo billing-local refund``): record the refund and
        tell the kernel with a signed ``refund.created`` webhook, as a vendor would.

        ``target``: an invoice id (``linv_``), a subscription id (``lsub_``: its latest invoice
        with money left to refund) or a checkout id (``lchk_``: the invoice its payment made).
        ``amount`` (minor units): all that is left by default. Idempotent: the same
        ``idempotency_key`` (by default ``<invoice>:<amount>`` for a given amount) is the same
        refund, and refunding what is left of a fully refunded invoice records nothing new; the
        refund's event is delivered again then (the kernel applies an event id once), so a
        delivery lost earlier is made good. Returns the refund and whether it is new. A refund
        does not cancel the subscription (``vendo billing cancel`` does).

        :raises NotFound: ``unknown_invoice`` (no such invoice, subscription or checkout).
        :raises InvalidInput: ``invalid_amount`` (not positive).
        :raises Conflict: ``not_refundable`` (nothing was paid), ``refund_exceeds_paid`` (more than
            is left), ``idempotency_key_reused`` (the key names another refund).
        """
        refund, created = self._record_refund(target, amount, idempotency_key, reason)
        await self._emit(self._refund_event(refund))
        return refund, created

    def _refund_event(self, refund: LocalRefund) -> BillingEvent:
        return BillingEvent(id=f"levt_{refund.id}", type="refund.created", occurred_at=refund.created_at,
                            subject=refund.subject, customer_id=refund.customer_id,
                            subscription_id=refund.subscription_id, checkout_id=refund.checkout_id,
                            invoice_id=refund.invoice_id, amount=refund.amount, currency=refund.currency,
                            data={"refund_id": refund.id, "reason": refund.reason})

    def refunds(self, invoice_id: str) -> list[LocalRefund]:
        """The refunds of an invoice, oldest first."""
        with self._kernel.session() as session:
            return list(session.scalars(select(LocalRefund).where(LocalRefund.invoice_id == invoice_id)
                                        .order_by(LocalRefund.created_at, LocalRefund.id)))

    def _refundable_invoice(self, session: Any, target: str) -> LocalInvoice:
        """The invoice ``target`` names, locked."""
        def locked(*where: Any) -> LocalInvoice | None:
            return session.scalar(select(LocalInvoice).where(*where).order_by(
                LocalInvoice.created_at.desc(), LocalInvoice.id.desc()).limit(1).with_for_update())

        invoice = locked(LocalInvoice.id == target)
        if invoice is None and session.get(LocalSubscription, target) is not None:
            paid = list(session.scalars(select(LocalInvoice).where(
                LocalInvoice.subscription_id == target, LocalInvoice.status == "paid", LocalInvoice.amount_paid > 0)
                .order_by(LocalInvoice.created_at.desc(), LocalInvoice.id.desc())))
            refunded = dict(session.execute(select(LocalRefund.invoice_id, sa_func.sum(LocalRefund.amount)).where(
                LocalRefund.invoice_id.in_([i.id for i in paid])).group_by(LocalRefund.invoice_id)).all())
            left = [i for i in paid if refunded.get(i.id, 0) < i.amount_paid]
            chosen = (left or paid)[:1]
            invoice = locked(LocalInvoice.id == chosen[0].id) if chosen else None
            if invoice is None:
                raise Conflict(f"subscription {target} has no paid invoice to refund", code="not_refundable")
        if invoice is None:
            checkout = session.get(LocalCheckout, target)
            if checkout is not None:
                invoice = locked(LocalInvoice.checkout_id == target)
                if invoice is None:
                    raise Conflict(f"checkout {target} took no payment ({checkout.status}"
                                   f"{', a trial' if checkout.trial_days else ''})", code="not_refundable")
        if invoice is None:
            raise NotFound(f"no local invoice, subscription or checkout '{target}'", code="unknown_invoice")
        if invoice.status != "paid" or invoice.amount_paid <= 0:
            raise Conflict(f"invoice {invoice.id} has nothing paid to refund", code="not_refundable")
        return invoice

    def _record_refund(self, target: str, amount: int | None, key: str | None,
                       reason: str | None) -> tuple[LocalRefund, bool]:
        if amount is not None and amount <= 0:
            raise InvalidInput("a refund amount is a positive number of minor units", code="invalid_amount")
        with self._kernel.session() as session:
            invoice = self._refundable_invoice(session, target)
            key = key or (f"{invoice.id}:{amount}" if amount is not None else None)
            if key is not None:
                found = session.scalar(select(LocalRefund).where(LocalRefund.idempotency_key == key))
                if found is not None:
                    if found.invoice_id != invoice.id or (amount is not None and found.amount != amount):
                        raise Conflict("this idempotency key was used for another refund",
                                       code="idempotency_key_reused", details={"refund_id": found.id})
                    return found, False
            earlier = list(session.scalars(select(LocalRefund).where(LocalRefund.invoice_id == invoice.id)
                                           .order_by(LocalRefund.created_at, LocalRefund.id)))
            left = invoice.amount_paid - sum(r.amount for r in earlier)
            if left <= 0 and earlier and amount is None:
                return earlier[-1], False  # refunded in full already
            if left <= 0 or (amount is not None and amount > left):
                raise Conflict(f"invoice {invoice.id} has {max(left, 0)} {invoice.currency} left to refund",
                               code="refund_exceeds_paid", details={"invoice_id": invoice.id, "left": max(left, 0),
                                                                    "currency": invoice.currency})
            sub = session.get(LocalSubscription, invoice.subscription_id) if invoice.subscription_id else None
            customer = session.get(LocalCustomer, invoice.customer_id)
            refund = LocalRefund(id=_id("lref"), idempotency_key=key, invoice_id=invoice.id,
                                 subscription_id=invoice.subscription_id, checkout_id=invoice.checkout_id,
                                 customer_id=invoice.customer_id,
                                 subject=sub.subject if sub is not None else customer.subject,
                                 amount=left if amount is None else amount, currency=invoice.currency,
                                 reason=reason, created_at=self._kernel.now())
            session.add(refund)
        return refund, True
