"""The subscription state machine: normalized :class:`vendo.BillingEvent` in, subscription
rows, invoices, entitlements, outbox events and audit entries out, in the caller's transaction.

Statuses follow ``trialing → active → past_due → canceled/expired``. Ordering: an event older
(by ``occurred_at``) than the last one applied to a subscription changes nothing (``stale``).
A failed payment opens a grace period (``billing.grace_days``) during which the entitlements
stay on (``past_due`` with ``grace_until``); after it the subject falls back to the default plan.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vendo.billing.models import BillingCustomer, BillingInvoice, Subscription
from vendo.capabilities import BILLING_EVENT_TYPES, SUBSCRIPTION_STATUSES, BillingEvent
from vendo.errors import InvalidInput

if TYPE_CHECKING:  # pragma: no cover
    from vendo.kernel import Kernel

log = logging.getLogger("vendo.billing")

#: Statuses under which a subscription grants its plan (past_due only until grace ends).
LIVE_STATUSES = ("trialing", "active", "past_due")
#: Statuses under which a subscription bills its plan (usage during a trial is waived).
BILLED_STATUSES = ("active", "past_due")


def event_to_json(event: BillingEvent) -> dict[str, Any]:
    """A JSON-compatible dict of ``event`` (:meth:`vendo.BillingEvent.to_json`)."""
    return event.to_json()


def event_from_json(data: dict[str, Any]) -> BillingEvent:
    """The :class:`BillingEvent` stored by :func:`event_to_json`."""
    return BillingEvent.from_json(data)


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 or ``None``."""
    return moment.isoformat() if moment is not None else None


class StateMachine:
    """Applies one event in the caller's transaction; returns an outcome word
    (``applied``, ``stale``, ``recorded``, ``ignored``)."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel

    # -- entry point -----------------------------------------------------------------------

    def apply(self, session: Session, provider: str, event: BillingEvent) -> str:
        """Apply ``event`` of ``provider``.

        :raises InvalidInput: an event naming no subject the kernel can resolve, or a subscription
            event without a plan for a subscription it does not know (left failed for retry).
        :raises NotFound: ``unknown_plan`` when the plan is not in the current catalog.
        """
        if event.type not in BILLING_EVENT_TYPES:
            return "ignored"
        if event.status is not None and event.status not in SUBSCRIPTION_STATUSES:
            raise InvalidInput(f"unknown subscription status {event.status!r}", code="invalid_event")
        subject = self._subject_of(session, provider, event)
        handler = getattr(self, "_on_" + event.type.replace(".", "_"))
        return handler(session, provider, event, subject)

    def _subject_of(self, session: Session, provider: str, event: BillingEvent) -> str:
        if event.subject:
            return event.subject
        if event.subscription_id:
            sub = session.get(Subscription, (provider, event.subscription_id))
            if sub is not None:
                return sub.subject
        if event.customer_id:
            customer = session.get(BillingCustomer, (provider, event.customer_id))
            if customer is not None:
                return customer.subject
            subjects = set(session.scalars(select(Subscription.subject).where(
                Subscription.provider == provider, Subscription.customer_id == event.customer_id)))
            if len(subjects) == 1:
                return subjects.pop()
        raise InvalidInput(f"{event.type} event {event.id} names no known subject, subscription or customer",
                           code="unknown_subject")

    # -- handlers --------------------------------------------------------------------------

    def _on_checkout_completed(self, session: Session, provider: str, event: BillingEvent, subject: str) -> str:
        email = event.data.get("email")
        if event.customer_id:
            self._customer(session, provider, event.customer_id, subject, email)
        self._kernel.outbox.publish(session, "billing.checkout.completed", {
            "provider": provider, "subject": subject, "plan": event.plan,
            "interval": event.data.get("interval"), "currency": event.currency or event.data.get("currency"),
            "seats": event.seats or 1, "customer_id": event.customer_id, "subscription_id": event.subscription_id,
            "checkout_id": event.checkout_id, "email": email, "provider_event_id": event.id,
            "amount": event.amount})
        self._audit(session, "billing.checkout.completed", provider, subject, "checkout", event.checkout_id or "",
                    {"plan": event.plan, "subscription_id": event.subscription_id})
        if not event.subscription_id:
            return "recorded"
        status = event.status
        if status is None and session.get(Subscription, (provider, event.subscription_id)) is None:
            # a provider that does not say (Stripe's session does not) starts it active, or trialing
            status = "trialing" if event.trial_end and event.trial_end > event.occurred_at else "active"
        # without a status, an existing subscription keeps the one its own events gave it (a
        # trial stays a trial when the checkout event comes after the subscription's)
        return self._transition(session, provider, event, subject, status=status)

    def _on_subscription_created(self, session: Session, provider: str, event: BillingEvent, subject: str) -> str:
        return self._transition(session, provider, event, subject, status=event.status)

    _on_subscription_updated = _on_subscription_created

    def _on_subscription_canceled(self, session: Session, provider: str, event: BillingEvent, subject: str) -> str:
        status = event.status if event.status in ("canceled", "expired") else "canceled"
        return self._transition(session, provider, event, subject, status=status, cancel_at_period_end=False)

    def _on_invoice_paid(self, session: Session, provider: str, event: BillingEvent, subject: str) -> str:
        self._invoice(session, provider, event, subject, "paid")
        self._kernel.outbox.publish(session, "billing.invoice.paid", {
            "provider": provider, "subject": subject, "subscription_id": event.subscription_id,
            "invoice_id": event.invoice_id, "amount": event.amount, "currency": event.currency,
            "current_period_end": iso(event.current_period_end)})
        self._audit(session, "billing.invoice.paid", provider, subject, "invoice", event.invoice_id or "",
                    {"amount": event.amount, "currency": event.currency, "subscription_id": event.subscription_id,
                     "event": event.id})
        if not event.subscription_id:
            return "recorded"
        sub = session.get(Subscription, (provider, event.subscription_id))
        if sub is not None and sub.status in ("canceled", "expired"):
            return "recorded"  # a late payment does not revive an ended subscription
        if sub is None and not event.plan:
            return "recorded"  # before the subscription's own event: that one sets the state
        if event.amount == 0 and (sub is None or sub.status == "trialing"):
            # the zero invoice that opens a trial (Stripe sends invoice.paid for it): still a
            # trial, not a payment; the subscription's own events set its state
            return "recorded"
        return self._transition(session, provider, event, subject, status="active")

    def _on_payment_failed(self, session: Session, provider: str, event: BillingEvent, subject: str) -> str:
        self._invoice(session, provider, event, subject, "open")
        grace_until = event.occurred_at + timedelta(days=self._kernel.settings.billing.grace_days)
        outcome = "recorded"
        sub = session.get(Subscription, (provider, event.subscription_id)) if event.subscription_id else None
        if sub is not None and sub.status in ("canceled", "expired"):
            return outcome
        if event.subscription_id and (sub is not None or event.plan):
            outcome = self._transition(session, provider, event, subject, status="past_due", grace_until=grace_until)
        if outcome == "stale":
            return outcome
        sub = session.get(Subscription, (provider, event.subscription_id)) if event.subscription_id else None
        grace = sub.grace_until if sub is not None and sub.grace_until is not None else grace_until
        self._kernel.outbox.publish(session, "billing.payment.failed", {
            "provider": provider, "subject": subject, "subscription_id": event.subscription_id,
            "invoice_id": event.invoice_id, "grace_until": iso(grace)})
        self._audit(session, "billing.payment.failed", provider, subject, "invoice", event.invoice_id or "",
                    {"amount": event.amount, "currency": event.currency, "subscription_id": event.subscription_id,
                     "grace_until": iso(grace), "event": event.id})
        self._payment_failed_email(session, provider, event, subject, sub.plan if sub is not None else event.plan,
                                   grace)
        return outcome

    def _payment_failed_email(self, session: Session, provider: str, event: BillingEvent, subject: str,
                              plan: str | None, grace: datetime) -> None:
        """Ask for the ``payment_failed`` email (once per provider event) to the workspace
        OWNER, else to the billing customer's address; without an address (or with one the
        notifier would refuse) nothing is sent and the event still applies."""
        from vendo.identity.models import Membership, User, Workspace

        owner = session.execute(select(User.email, Workspace.name).join(
            Membership, Membership.user_id == User.id).join(Workspace, Workspace.id == Membership.workspace_id)
            .where(Membership.workspace_id == subject, Membership.role == "OWNER")).first()
        to = owner.email if owner is not None else session.scalar(select(BillingCustomer.email).where(
            BillingCustomer.provider == provider, BillingCustomer.subject == subject))
        if not to:
            log.info("billing event %s: no address for the payment_failed email of %s, not sent", event.id, subject)
            return
        try:
            self._kernel.notify(session, to=to, template="payment_failed",
                                context={"workspace": owner.name if owner is not None else subject, "plan": plan,
                                         "grace_until": iso(grace), "portal_url": None},
                                idempotency_key=f"billing:{provider}:{event.id}:payment_failed")
        except InvalidInput as exc:
            log.warning("billing event %s: payment_failed email of %s not sent: %s", event.id, subject, exc.message)

    def _on_refund_created(self, session: Session, provider: str, event: BillingEvent, subject: str) -> str:
        invoice = session.get(BillingInvoice, (provider, event.invoice_id)) if event.invoice_id else None
        if invoice is not None:
            invoice.amount_refunded += event.amount or 0
            invoice.updated_at = self._kernel.now()
        subscription_id = event.subscription_id or (invoice.subscription_id if invoice is not None else None) \
            or self._only_subscription(session, provider, event, subject)
        currency = event.currency or (invoice.currency if invoice is not None else None)
        # what the refunded payment was and how much of it is given back by now: the vendor's
        # figures when the event carries them, else the invoice's as the kernel recorded it
        paid = event.data.get("amount_paid", invoice.amount if invoice is not None else None)
        total = event.data.get("amount_refunded_total", invoice.amount_refunded if invoice is not None else None)
        fully = event.data.get("fully_refunded")
        if fully is None and paid is not None and total is not None:
            fully = total >= paid
        self._kernel.outbox.publish(session, "billing.refund.created", {
            "provider": provider, "subject": subject, "subscription_id": subscription_id,
            "checkout_id": event.checkout_id, "invoice_id": event.invoice_id, "amount": event.amount,
            "currency": currency, "amount_paid": paid, "amount_refunded_total": total, "fully_refunded": fully,
            "payment": event.data.get("payment_intent")})
        self._audit(session, "billing.refund.created", provider, subject, "invoice", event.invoice_id or "",
                    {"amount": event.amount, "currency": currency, "subscription_id": subscription_id})
        return "recorded"

    @staticmethod
    def _only_subscription(session: Session, provider: str, event: BillingEvent, subject: str) -> str | None:
        """The subscription a refund naming none is for, when only one can be: the customer's
        only subscription at the provider (the subject's, without a customer id); else ``None``."""
        owner = Subscription.customer_id == event.customer_id if event.customer_id else \
            Subscription.subject == subject
        found = list(session.scalars(select(Subscription.subscription_id).where(
            Subscription.provider == provider, owner).limit(2)))
        return found[0] if len(found) == 1 else None

    # -- state -----------------------------------------------------------------------------

    def _transition(self, session: Session, provider: str, event: BillingEvent, subject: str, *,
                    status: str | None, cancel_at_period_end: bool | None = None,
                    grace_until: datetime | None = None) -> str:
        """Move the subscription named by ``event`` (created if new) unless the event is stale."""
        now = self._kernel.now()
        sub = session.scalar(select(Subscription).where(
            Subscription.provider == provider, Subscription.subscription_id == event.subscription_id)
            .with_for_update())
        if sub is not None and event.occurred_at < sub.last_event_at:
            return "stale"
        if sub is None:
            if not event.plan:
                raise InvalidInput(f"{event.type} event {event.id} creates subscription {event.subscription_id} "
                                   "without naming its plan", code="invalid_event")
            sub = Subscription(provider=provider, subscription_id=event.subscription_id, subject=subject,
                               plan=event.plan, status=status or "active", seats=1, cancel_at_period_end=False,
                               last_event_at=event.occurred_at, created_at=now, updated_at=now)
            session.add(sub)
            previous: tuple[Any, ...] = (None, None, None, None, None, None, None)
        else:
            previous = (sub.plan, sub.status, sub.seats, sub.current_period_end, sub.cancel_at_period_end,
                        sub.scheduled_plan, sub.trial_end)
        if event.customer_id:
            sub.customer_id = event.customer_id
        if event.plan:
            sub.plan = event.plan
            if sub.scheduled_plan == event.plan:
                sub.scheduled_plan = None
        if "scheduled_plan" in event.data:
            sub.scheduled_plan = event.data["scheduled_plan"] or None
        if status:
            sub.status = status
        if event.seats is not None:
            sub.seats = event.seats
        for name in ("interval", "currency"):
            value = event.data.get(name) or (event.currency if name == "currency" else None)
            if value:
                setattr(sub, name, value)
        if event.current_period_end is not None:
            sub.current_period_end = event.current_period_end
        flag = cancel_at_period_end if cancel_at_period_end is not None else event.cancel_at_period_end
        if flag is not None:
            sub.cancel_at_period_end = flag
        if event.trial_end is not None:
            sub.trial_end = event.trial_end
        if sub.status == "past_due":
            if sub.grace_until is None or previous[1] != "past_due":
                sub.grace_until = grace_until or event.occurred_at + timedelta(
                    days=self._kernel.settings.billing.grace_days)
        else:
            sub.grace_until = None
        if sub.status not in BILLED_STATUSES:
            sub.billed_since = None
        elif previous[1] not in BILLED_STATUSES or sub.plan != previous[0] or sub.billed_since is None:
            sub.billed_since = event.occurred_at
        sub.last_event_at, sub.updated_at = event.occurred_at, now
        self._entitle(session, subject)
        current = (sub.plan, sub.status, sub.seats, sub.current_period_end, sub.cancel_at_period_end,
                   sub.scheduled_plan, sub.trial_end)
        if current != previous:
            payload = {"provider": provider, "subject": subject, "subscription_id": sub.subscription_id,
                       "plan": sub.plan, "status": sub.status, "previous_plan": previous[0],
                       "previous_status": previous[1], "seats": sub.seats,
                       "current_period_end": iso(sub.current_period_end),
                       "cancel_at_period_end": sub.cancel_at_period_end, "scheduled_plan": sub.scheduled_plan,
                       "trial_end": iso(sub.trial_end)}
            self._kernel.outbox.publish(session, "billing.subscription.changed", payload)
            self._audit(session, "billing.subscription.changed", provider, subject, "subscription",
                        sub.subscription_id, {k: payload[k] for k in ("plan", "status", "previous_plan",
                                                                      "previous_status", "seats",
                                                                      "cancel_at_period_end", "scheduled_plan")}
                        | {"event": event.id})
        return "applied"

    def _entitle(self, session: Session, subject: str) -> None:
        """Point the subject's entitlements at its current subscription (a live one first,
        the most recently changed among equals)."""
        session.flush()
        subs = list(session.scalars(select(Subscription).where(Subscription.subject == subject)))
        live = [s for s in subs if s.status in LIVE_STATUSES]
        current = max(live or subs, key=lambda s: s.last_event_at)
        entitlements = self._kernel.entitlements
        if current.status == "trialing":
            end = current.trial_end
            days = max(1, -(-int((end - self._kernel.now()).total_seconds()) // 86_400)) if end else None
            assignment = entitlements.assign(session, subject, current.plan, status="trialing", trial_days=days,
                                             seats=current.seats)
            if end is not None:
                assignment.trial_ends_at = end
        else:
            entitlements.assign(session, subject, current.plan, status=current.status, seats=current.seats,
                                grace_until=current.grace_until if current.status == "past_due" else None)

    def _customer(self, session: Session, provider: str, customer_id: str, subject: str, email: str | None) -> None:
        customer = session.get(BillingCustomer, (provider, customer_id))
        if customer is None:
            existing = session.scalar(select(BillingCustomer).where(BillingCustomer.provider == provider,
                                                                    BillingCustomer.subject == subject))
            if existing is not None:  # the provider made a new customer for this subject: follow it
                session.delete(existing)
                session.flush()
            session.add(BillingCustomer(provider=provider, customer_id=customer_id, subject=subject, email=email,
                                        created_at=self._kernel.now()))
        elif email and not customer.email:
            customer.email = email

    def _invoice(self, session: Session, provider: str, event: BillingEvent, subject: str, status: str) -> None:
        if not event.invoice_id:
            return
        now = self._kernel.now()
        invoice = session.get(BillingInvoice, (provider, event.invoice_id))
        if invoice is None:
            invoice = BillingInvoice(provider=provider, invoice_id=event.invoice_id, subject=subject,
                                     amount_refunded=0, occurred_at=event.occurred_at, status=status, updated_at=now)
            session.add(invoice)
        elif invoice.status == "paid" and status != "paid":
            return  # a late "failed" never un-pays an invoice
        invoice.status, invoice.updated_at = status, now
        invoice.subscription_id = event.subscription_id or invoice.subscription_id
        invoice.customer_id = event.customer_id or invoice.customer_id
        invoice.amount = event.amount if event.amount is not None else invoice.amount
        invoice.currency = event.currency or invoice.currency

    def _audit(self, session: Session, action: str, provider: str, subject: str, target_type: str, target_id: str,
               details: dict[str, Any]) -> None:
        self._kernel.audit.record(session, action, actor_label=f"billing:{provider}",
                                  workspace=subject if subject.startswith("ws_") else None,
                                  target_type=target_type, target_id=target_id, details=details)
