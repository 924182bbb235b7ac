"""``kernel.billing``: webhook ingestion, the owner's billing actions and catalog sync.

Webhooks (:meth:`Billing.ingest`): the provider verifies and translates the body; each event
is stored raw in a transaction of its own, then applied by the state machine in another one
(all or nothing). An event already processed is a duplicate; one that failed is stored as
``failed`` with its error and is tried again on redelivery or ``vendo billing replay``.

Actions the kernel asks of the provider (checkout, change, cancel, resume) write nothing
until the provider answered; what the provider answers about the subscription becomes a
normalized ``subscription.updated`` event (provider ``<name>``, id ``vendo:<uuid>``) applied
by the same state machine, so the entitlements follow at once and a later, older webhook
never undoes it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import re
import uuid
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping, TypeVar

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from vendo.billing.machine import LIVE_STATUSES, StateMachine, event_from_json, event_to_json, iso
from vendo.billing.models import BillingCustomer, BillingPrice, CheckoutRecord, Subscription, WebhookEvent
from vendo.billing.usage import UsageReporter, usage_lookup_key
from vendo.capabilities import (
    BillingEvent,
    CatalogPrice,
    CheckoutRequest,
    SubscriptionChange,
    SubscriptionInfo,
)
from vendo.errors import Conflict, InvalidInput, NotFound, ProviderUnavailable, VendoError

if TYPE_CHECKING:  # pragma: no cover
    from vendo.entitlements.catalog import Catalog, Plan, Price
    from vendo.kernel import Kernel

log = logging.getLogger("vendo.billing")
T = TypeVar("T")

#: Currencies without a minor unit (amounts are whole units at the vendors).
ZERO_DECIMAL = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd",
                          "vuv", "xaf", "xof", "xpf"})


_FIND_EVENT = select(WebhookEvent.id).where(WebhookEvent.provider == bindparam("provider"),
                                            WebhookEvent.event_id == bindparam("event_id"))
_LOCK_EVENT = select(WebhookEvent).where(WebhookEvent.id == bindparam("id")).with_for_update()


class EventFailed(VendoError):
    """Applying a stored billing event failed; it stays ``failed`` for a retry (the provider's
    redelivery or ``vendo billing replay``). Answered 500 so providers redeliver."""

    code = "billing_event_failed"
    status_code = 500


def exact_minor_units(amount: Decimal, currency: str) -> Decimal:
    """``amount`` in the currency's minor unit, unrounded (``0.002`` EUR is ``0.2`` cents)."""
    return Decimal(amount) * (1 if currency.lower() in ZERO_DECIMAL else 100)


def minor_units(amount: Decimal, currency: str) -> int:
    """``amount`` in the currency's minor unit (cents), as vendors expect it."""
    return int(exact_minor_units(amount, currency).to_integral_value())


def check_interval(interval: str) -> str:
    """``interval`` when it is a billing interval Vendo sells (``month``, ``year``).

    :raises InvalidInput: ``invalid_interval``.
    """
    if interval not in ("month", "year"):
        raise InvalidInput(f"unknown billing interval {interval!r}: use month or year", code="invalid_interval",
                           details={"interval": interval})
    return interval


def lookup_key(plan: str, version: int, interval: str, currency: str) -> str:
    """The stable price lookup key ``vendo:<plan>:v<version>:<interval>:<currency>``."""
    return f"vendo:{plan}:v{version}:{interval}:{currency.lower()}"


_LOOKUP_KEY = re.compile(r"vendo:(?P<plan>[^:]+):v(?P<version>\d+):(?P<interval>month|year):(?P<currency>[a-z]{3})"
                         r"(?::usage:(?P<feature>.+))?")


@dataclass(frozen=True)
class LookupKey:
    """A price lookup key read back (:func:`parse_lookup_key`); ``feature`` names the metered
    feature of a usage-based price, ``None`` for a plan price."""

    plan: str
    version: int
    interval: str
    currency: str
    feature: str | None = None


def parse_lookup_key(key: str | None) -> LookupKey | None:
    """The parts of a key :func:`lookup_key` (or ``usage_lookup_key``) made, ``None`` for any
    other string."""
    match = _LOOKUP_KEY.fullmatch(key or "")
    if match is None:
        return None
    return LookupKey(match["plan"], int(match["version"]), match["interval"], match["currency"], match["feature"])


class Billing:
    """The kernel's billing service (``kernel.billing``)."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        self.machine = StateMachine(kernel)
        self.usage = UsageReporter(kernel)

    # -- providers -------------------------------------------------------------------------

    def provider(self, name: str | None = None) -> tuple[str, Any]:
        """``(name, provider)``: the one named, or the active billing provider.

        :raises NotFound: ``unknown_provider`` for a name no plugin registered.
        :raises ProviderNotConfigured: no billing provider installed.
        """
        registered = self._kernel.providers.registered("billing")
        if name is not None:
            for registration in registered:
                if registration.name == name:
                    return name, registration.provider
            raise NotFound(f"no billing provider named '{name}' is installed", code="unknown_provider")
        active = self._kernel.providers.get("billing")
        return next(r.name for r in registered if r.provider is active), active

    async def _call(self, provider: str, what: str, call: Callable[[], Awaitable[T] | T]) -> T:
        """Call the provider; anything but a caller's mistake becomes 502 ``provider_unavailable``."""
        try:
            result = call()
            if inspect.isawaitable(result):
                result = await result
            return result  # type: ignore[return-value]
        except VendoError as exc:
            if exc.status_code < 500:
                raise
            raise ProviderUnavailable(f"billing provider '{provider}' failed to {what}: {exc.message}") from exc
        except Exception as exc:
            log.warning("billing provider %s failed to %s: %s: %s", provider, what, type(exc).__name__, exc)
            raise ProviderUnavailable(
                f"billing provider '{provider}' is unreachable or failed to {what} ({type(exc).__name__})",
                details={"provider": provider}) from exc

    # -- webhooks --------------------------------------------------------------------------

    async def ingest(self, provider_name: str, headers: Mapping[str, str], body: bytes) -> list[dict[str, Any]]:
        """Verify, store and apply a webhook delivery; one result per normalized event
        (``{"id", "type", "status", "outcome"}``).

        :raises NotFound: ``unknown_provider``.
        :raises InvalidSignature: bad, missing or stale signature (nothing is stored).
        :raises EventFailed: an event could not be applied (it is stored as ``failed``).
        """
        name, provider = self.provider(provider_name)
        events = provider.parse_webhook(headers, body)
        results = []
        for event in events:
            results.append(await run_in_threadpool(self._store_and_process, name, event, body))
        return results

    def _store_and_process(self, provider: str, event: BillingEvent, body: bytes) -> dict[str, Any]:
        return self.process(self._store(provider, event, body))

    def _store(self, provider: str, event: BillingEvent, body: bytes) -> int:
        """Store the event before processing (its own transaction); the row id."""
        try:
            with self._kernel.session() as session:
                row = WebhookEvent(provider=provider, event_id=event.id, type=event.type, body=bytes(body),
                                   event=event_to_json(event), occurred_at=event.occurred_at,
                                   received_at=self._kernel.now(), status="received", attempts=0)
                session.add(row)
                session.flush()
                return row.id
        except IntegrityError:  # stored already (a redelivery), or concurrently
            with self._kernel.session() as session:
                return session.scalar(_FIND_EVENT, {"provider": provider, "event_id": event.id})

    def process(self, row_id: int) -> dict[str, Any]:
        """Apply one stored event in one transaction (a processed one is a duplicate).

        :raises EventFailed: the state machine failed; the event is left ``failed``.
        """
        try:
            with self._kernel.session() as session:
                row = session.scalar(_LOCK_EVENT, {"id": row_id})
                if row is None:
                    raise NotFound(f"no billing event {row_id}", code="unknown_event")
                if row.status == "processed":
                    return self._result(row, "duplicate")
                outcome = self.machine.apply(session, row.provider, event_from_json(row.event))
                row.status, row.outcome, row.error = "processed", outcome, None
                row.processed_at, row.attempts = self._kernel.now(), row.attempts + 1
                return self._result(row, outcome)
        except NotFound as exc:
            if exc.code == "unknown_event":
                raise
            error: Exception = exc
        except Exception as exc:  # noqa: BLE001 - any failure leaves the event for retry
            error = exc
        message = error.message if isinstance(error, VendoError) else str(error)
        with self._kernel.session() as session:
            row = session.get(WebhookEvent, row_id)
            row.status, row.attempts = "failed", row.attempts + 1
            row.error = f"{type(error).__name__}: {message}"[:4000]
            event_id, event_type = row.event_id, row.type
        log.warning("billing event %s (%s) failed: %s", event_id, event_type, message)
        raise EventFailed(f"billing event {event_id} ({event_type}) failed and is kept for retry: {message}",
                          details={"event_id": event_id, "type": event_type}) from error

    @staticmethod
    def _result(row: WebhookEvent, outcome: str) -> dict[str, Any]:
        return {"id": row.event_id, "type": row.type, "status": row.status, "outcome": outcome}

    def replay(self, event_id: str, provider: str | None = None) -> dict[str, Any]:
        """Run a stored event (received or failed) again.

        :raises NotFound: ``unknown_event``; :raises Conflict: ``already_processed``.
        """
        with self._kernel.session() as session:
            query = select(WebhookEvent).where(WebhookEvent.event_id == event_id)
            if provider:
                query = query.where(WebhookEvent.provider == provider)
            rows = list(session.scalars(query))
        if not rows:
            raise NotFound(f"no billing event '{event_id}'", code="unknown_event")
        if len(rows) > 1:
            raise InvalidInput(f"several providers sent an event '{event_id}': name one with --provider",
                               code="ambiguous_event")
        if rows[0].status == "processed":
            raise Conflict(f"billing event '{event_id}' was already processed", code="already_processed")
        return self.process(rows[0].id)

    def events(self, *, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Stored events, newest first."""
        if status is not None and status not in ("received", "processed", "failed"):
            raise InvalidInput(f"unknown status {status!r}: use received, processed or failed",
                               code="invalid_status")
        with self._kernel.session() as session:
            query = select(WebhookEvent).order_by(WebhookEvent.id.desc()).limit(limit)
            if status:
                query = query.where(WebhookEvent.status == status)
            return [{"id": r.event_id, "provider": r.provider, "type": r.type, "status": r.status,
                     "outcome": r.outcome, "attempts": r.attempts, "error": r.error,
                     "occurred_at": iso(r.occurred_at), "received_at": iso(r.received_at),
                     "subject": r.event.get("subject")} for r in session.scalars(query)]

    async def apply_info(self, provider: str, info: SubscriptionInfo, subject: str,
                         data: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Apply what the provider answered about a subscription as a ``subscription.updated``
        event of the kernel's own (stored like a webhook, processed once)."""
        event = BillingEvent(
            id=f"vendo:{uuid.uuid4().hex}", type="subscription.updated", occurred_at=self._kernel.now(),
            subject=info.subject or subject, customer_id=info.customer_id, subscription_id=info.id, plan=info.plan,
            status=info.status, seats=info.seats, current_period_end=info.current_period_end,
            cancel_at_period_end=info.cancel_at_period_end, trial_end=info.trial_end, data=dict(data or {}))
        body = json.dumps(event_to_json(event), sort_keys=True).encode()
        return await run_in_threadpool(self._store_and_process, provider, event, body)

    # -- catalog ---------------------------------------------------------------------------

    def _catalog(self) -> tuple[Catalog, int]:
        with self._kernel.session() as session:
            version = self._kernel.entitlements.current_version(session)
            return self._kernel.entitlements.catalog(version, session), version

    def catalog_prices(self) -> list[CatalogPrice]:
        """Every price of the current catalog, as pushed to providers."""
        catalog, version = self._catalog()
        return [self._catalog_price(plan, price, version) for plan in catalog.ordered_plans() for price in plan.prices]

    @staticmethod
    def _catalog_price(plan: Plan, price: Price, version: int) -> CatalogPrice:
        key = lookup_key(plan.id, version, price.interval, price.currency)
        exact = None
        if price.metered_feature:
            key = usage_lookup_key(key, price.metered_feature)
            exact = format(exact_minor_units(price.amount, price.currency).normalize(), "f")
        return CatalogPrice(
            lookup_key=key, plan=plan.id,
            plan_name=plan.name, plan_version=version, interval=price.interval, currency=price.currency,
            unit_amount=minor_units(price.amount, price.currency),
            per_seat_amount=minor_units(price.per_seat, price.currency), min_seats=price.min_seats,
            trial_days=plan.trial_days, metered_feature=price.metered_feature, unit_amount_decimal=exact,
            included_units=price.included)

    @staticmethod
    def usage_price_keys(plan: Plan, version: int, interval: str, currency: str) -> tuple[str, ...]:
        """The lookup keys of ``plan``'s usage-based prices at ``interval`` and ``currency``."""
        base = lookup_key(plan.id, version, interval, currency)
        return tuple(usage_lookup_key(base, p.metered_feature or "") for p in plan.usage_prices(interval, currency))

    async def sync_catalog(self) -> dict[str, str]:
        """Push the current catalog's prices to the active provider; store and return
        ``{lookup_key: provider price id}``."""
        name, provider = self.provider()
        prices = await run_in_threadpool(self.catalog_prices)
        mapping = await self._call(name, "sync the catalog", lambda: provider.sync_catalog(prices))
        expected = {p.lookup_key for p in prices}
        missing = expected - set(mapping)
        if missing:
            raise ProviderUnavailable(f"billing provider '{name}' did not return prices for {sorted(missing)}")

        def store() -> None:
            now = self._kernel.now()
            with self._kernel.session() as session:
                for key, price_id in mapping.items():
                    row = session.get(BillingPrice, (name, key)) or BillingPrice(provider=name, lookup_key=key)
                    row.price_id, row.synced_at = price_id, now
                    session.add(row)

        await run_in_threadpool(store)
        return dict(mapping)

    def _price_of(self, catalog: Catalog, version: int, plan_id: str, interval: str, currency: str,
                  seats: int) -> tuple[Plan, Price]:
        plan = catalog.plan(plan_id)  # NotFound unknown_plan
        currency = currency.lower()
        offered = [p for p in plan.flat_prices if p.interval == interval]
        if not plan.flat_prices or not offered:
            raise NotFound(f"plan '{plan_id}' has no {interval}ly price", code="unknown_plan",
                           details={"plan": plan_id, "interval": interval})
        price = next((p for p in offered if p.currency == currency), None)
        if price is None:
            raise InvalidInput(f"plan '{plan_id}' is not offered in {currency.upper()}", code="currency_not_offered",
                               details={"plan": plan_id, "currencies": sorted({p.currency for p in offered})})
        if seats < price.min_seats:
            raise InvalidInput(f"plan '{plan_id}' needs at least {price.min_seats} seats", code="too_few_seats",
                               details={"min_seats": price.min_seats})
        return plan, price

    # -- subscriptions of a subject -----------------------------------------------------------

    def current(self, session: Session, subject: str) -> Subscription | None:
        """The subject's subscription that decides its entitlements (live first, newest)."""
        subs = list(session.scalars(select(Subscription).where(Subscription.subject == subject)))
        live = [s for s in subs if s.status in LIVE_STATUSES]
        return max(live or subs, key=lambda s: s.last_event_at) if subs else None

    def _live(self, subject: str) -> Subscription:
        with self._kernel.session() as session:
            sub = self.current(session, subject)
        if sub is None or sub.status not in LIVE_STATUSES:
            raise NotFound(f"{subject} has no running subscription", code="no_subscription")
        return sub

    async def _live_at(self, name: str, subject: str) -> Subscription:
        """The subject's running subscription, held by the active provider ``name``.

        :raises NotFound: ``no_subscription``; :raises Conflict: ``provider_mismatch`` (it is
            held by another provider, e.g. after switching providers: change it there).
        """
        sub = await run_in_threadpool(self._live, subject)
        if sub.provider != name:
            raise Conflict(f"the subscription is held by provider '{sub.provider}', not the active '{name}'",
                           code="provider_mismatch", details={"provider": sub.provider, "active": name})
        return sub

    def subscription(self, subject: str) -> dict[str, Any]:
        """The subject's billing state and the plan its entitlements currently follow."""
        with self._kernel.session() as session:
            sub = self.current(session, subject)
            customer = session.scalar(select(BillingCustomer).where(BillingCustomer.subject == subject)
                                      .order_by(BillingCustomer.created_at.desc()).limit(1))
        entitled = self._kernel.entitlements.entitlements(subject)
        state: dict[str, Any] = {"subject": subject, "entitled_plan": entitled["plan"],
                                 "customer_id": customer.customer_id if customer else None, "subscription": None}
        if sub is not None:
            state["subscription"] = {
                "provider": sub.provider, "id": sub.subscription_id, "plan": sub.plan, "status": sub.status,
                "seats": sub.seats, "interval": sub.interval, "currency": sub.currency,
                "current_period_end": iso(sub.current_period_end), "cancel_at_period_end": sub.cancel_at_period_end,
                "trial_end": iso(sub.trial_end), "grace_until": iso(sub.grace_until),
                "scheduled_plan": sub.scheduled_plan}
        return state

    def _customer_of(self, provider: str, subject: str) -> BillingCustomer | None:
        with self._kernel.session() as session:
            return session.scalar(select(BillingCustomer).where(BillingCustomer.provider == provider,
                                                                BillingCustomer.subject == subject))

    # -- owner actions ---------------------------------------------------------------------

    async def checkout(self, subject: str, *, plan: str, interval: str = "month", currency: str | None = None,
                       seats: int = 1, trial: bool = False, success_url: str, cancel_url: str,
                       email: str | None = None, idempotency_key: str | None = None,
                       actor: str | None = None) -> dict[str, Any]:
        """Open a hosted checkout for ``subject``; the same ``idempotency_key`` answers the
        same session.

        :raises NotFound: ``unknown_plan`` (plan, or no price at that interval).
        :raises InvalidInput: ``currency_not_offered``, ``too_few_seats``, ``no_trial``.
        :raises Conflict: ``already_subscribed``, ``subscription_exists``, ``trial_used`` (one trial per
            subject), ``idempotency_key_reused``.
        :raises ProviderUnavailable: the provider failed; nothing was written.
        """
        check_interval(interval)
        name, provider = self.provider()
        catalog, version = await run_in_threadpool(self._catalog)
        currency = (currency or catalog.currency).lower()
        request_hash = hashlib.sha256(json.dumps(
            [plan, interval, currency, seats, trial, success_url, cancel_url], sort_keys=True).encode()).hexdigest()
        if idempotency_key:
            record = await run_in_threadpool(self._checkout_record, subject, idempotency_key)
            if record is not None:
                if record.request_hash != request_hash:
                    raise Conflict("this Idempotency-Key was used for another checkout", code="idempotency_key_reused")
                return {"checkout_id": record.checkout_id, "url": record.url, "provider": record.provider,
                        "replayed": True}
        plan_obj, _price = self._price_of(catalog, version, plan, interval, currency, seats)
        trial_days = plan_obj.trial_days if trial else 0
        if trial and not trial_days:
            raise InvalidInput(f"plan '{plan}' has no trial", code="no_trial")

        def running() -> Subscription | None:
            with self._kernel.session() as session:
                return self.current(session, subject)

        sub = await run_in_threadpool(running)
        if sub is not None and sub.status in ("active", "past_due"):
            if sub.plan == plan:
                raise Conflict(f"{subject} is already subscribed to '{plan}'", code="already_subscribed",
                               details={"subscription_id": sub.subscription_id})
            raise Conflict(f"{subject} already has a subscription ('{sub.plan}'): change its plan instead",
                           code="subscription_exists", details={"subscription_id": sub.subscription_id})
        if sub is not None and sub.status == "trialing":
            # Paying a checkout converts a running trial only with providers that say so
            # (``converts_trials_by_checkout``, e.g. local); at a vendor like Stripe the checkout
            # would open a second subscription beside the trial, which bills on its own.
            converts = getattr(provider, "converts_trials_by_checkout", False)
            if sub.plan == plan and (trial or not converts):
                raise Conflict(f"{subject} is already trying '{plan}'" + (
                    "" if converts else ": the trial becomes paid at its end with the payment method on file "
                                        "(add one in the portal)"),
                               code="already_subscribed", details={"subscription_id": sub.subscription_id})
            if sub.plan != plan and not converts:
                raise Conflict(f"{subject} is trying '{sub.plan}': change its plan instead",
                               code="subscription_exists", details={"subscription_id": sub.subscription_id})
        if trial and await run_in_threadpool(self._had_trial, subject):
            raise Conflict(f"{subject} has had a trial already: subscribe without one", code="trial_used")
        customer = await run_in_threadpool(self._customer_of, name, subject)
        customer_id = customer.customer_id if customer else await self._call(
            name, "create a customer", lambda: provider.create_customer(subject, email))
        key = lookup_key(plan, version, interval, currency)
        request = CheckoutRequest(
            subject=subject, plan=plan, interval=interval, currency=currency, seats=seats, trial_days=trial_days,
            success_url=success_url, cancel_url=cancel_url, customer_email=email,
            idempotency_key=f"{subject}:{idempotency_key}" if idempotency_key else None,
            metadata={"vendo_subject": subject, "vendo_plan": plan}, price_key=key, customer_id=customer_id,
            usage_price_keys=self.usage_price_keys(plan_obj, version, interval, currency))
        session_info = await self._call(name, "open a checkout", lambda: provider.create_checkout(request))

        def record() -> dict[str, Any]:
            now = self._kernel.now()
            try:
                with self._kernel.session() as session:
                    if customer is None and session.get(BillingCustomer, (name, customer_id)) is None:
                        session.add(BillingCustomer(provider=name, customer_id=customer_id, subject=subject,
                                                    email=email, created_at=now))
                    if idempotency_key:
                        session.add(CheckoutRecord(subject=subject, idempotency_key=idempotency_key, provider=name,
                                                   request_hash=request_hash, checkout_id=session_info.id,
                                                   url=session_info.url, created_at=now))
                    self._kernel.audit.record(session, "billing.checkout.started", actor=actor,
                                              workspace=subject if subject.startswith("ws_") else None,
                                              target_type="checkout", target_id=session_info.id,
                                              details={"plan": plan, "interval": interval, "currency": currency,
                                                       "seats": seats, "trial_days": trial_days})
            except IntegrityError:  # the same key raced us: answer what the winner stored
                existing = self._checkout_record(subject, idempotency_key or "")
                if existing is None:
                    raise
                return {"checkout_id": existing.checkout_id, "url": existing.url, "provider": existing.provider,
                        "replayed": True}
            return {"checkout_id": session_info.id, "url": session_info.url, "provider": name, "replayed": False}

        return await run_in_threadpool(record)

    def _had_trial(self, subject: str) -> bool:
        with self._kernel.session() as session:
            return session.scalar(select(Subscription.subscription_id).where(
                Subscription.subject == subject, Subscription.trial_end.is_not(None)).limit(1)) is not None

    def _checkout_record(self, subject: str, key: str) -> CheckoutRecord | None:
        with self._kernel.session() as session:
            return session.get(CheckoutRecord, (subject, key))

    async def portal(self, subject: str, return_url: str) -> dict[str, Any]:
        """Open the provider's customer portal for ``subject``.

        :raises NotFound: ``no_customer`` before any checkout.
        """
        name, provider = self.provider()
        customer = await run_in_threadpool(self._customer_of, name, subject)
        if customer is None:
            raise NotFound(f"{subject} is not a customer of '{name}' yet", code="no_customer")
        portal = await self._call(name, "open the portal", lambda: provider.create_portal(customer.customer_id,
                                                                                          return_url))
        return {"id": portal.id, "url": portal.url}

    async def change_plan(self, subject: str, *, plan: str | None = None, seats: int | None = None,
                          actor: str | None = None, idempotency_key: str | None = None) -> dict[str, Any]:
        """Upgrade now (prorated), downgrade at the end of the period; seats likewise (more: now;
        fewer: at the period end).

        :raises NotFound: ``no_subscription``, ``unknown_plan``.
        :raises InvalidInput: ``currency_not_offered``, ``too_few_seats``, ``nothing_to_change``.
        """
        name, provider = self.provider()
        sub = await self._live_at(name, subject)
        catalog, version = await run_in_threadpool(self._catalog)
        target = plan or sub.plan
        count = seats if seats is not None else sub.seats
        if target == sub.plan and count == sub.seats:
            raise InvalidInput("the subscription already has this plan and seat count", code="nothing_to_change")
        await self._flush_usage(subject)
        interval, currency = sub.interval or "month", (sub.currency or catalog.currency)
        target_plan, _price = self._price_of(catalog, version, target, interval, currency, count)  # refuses unknown
        # plans and currencies
        upgrade = self._monthly(catalog, target, currency, count) >= self._monthly(catalog, sub.plan, currency,
                                                                                   sub.seats)
        moves = target != sub.plan  # a seat change keeps the prices the subscriber pays now
        change = SubscriptionChange(
            subscription_id=sub.subscription_id, plan=target if moves else None,
            price_key=lookup_key(target, version, interval, currency) if moves else None,
            seats=count if count != sub.seats else None,
            at_period_end=not upgrade, idempotency_key=f"{subject}:{idempotency_key}" if idempotency_key else None,
            usage_price_keys=self.usage_price_keys(target_plan, version, interval, currency.lower()) if moves else None)
        info = await self._call(name, "change the subscription", lambda: provider.change_subscription(change))
        # an immediate change replaces a change waiting for the renewal (providers release it)
        data = {"scheduled_plan": None if upgrade or target == sub.plan else target}
        result = await self.apply_info(name, info, subject, data)
        await run_in_threadpool(self._kernel.audit.record_now, "billing.plan.change_requested", actor=actor,
                                workspace=subject if subject.startswith("ws_") else None,
                                target_type="subscription", target_id=sub.subscription_id,
                                details={"from": sub.plan, "to": target, "seats": count,
                                         "when": "now" if upgrade else "period_end"})
        return {"applies": "now" if upgrade else "period_end", "event": result,
                **await run_in_threadpool(self.subscription, subject)}

    def _monthly(self, catalog: Catalog, plan_id: str, currency: str, seats: int) -> Decimal:
        plan = catalog.plan(plan_id)
        best = Decimal(0)
        for price in plan.flat_prices:
            if price.currency != currency:
                continue
            per_month = (price.amount + price.per_seat * max(seats, price.min_seats)) / (
                12 if price.interval == "year" else 1)
            best = max(best, per_month)
        return best

    async def cancel(self, subject: str, *, at_period_end: bool = True, actor: str | None = None) -> dict[str, Any]:
        """Cancel now or at the end of the paid period."""
        name, provider = self.provider()
        sub = await self._live_at(name, subject)
        if not at_period_end:
            await self._flush_usage(subject)
        await self._call(name, "cancel the subscription",
                         lambda: provider.cancel_subscription(sub.subscription_id, at_period_end))
        info = await self._call(name, "read the subscription", lambda: provider.get_subscription(sub.subscription_id))
        await self.apply_info(name, info, subject)
        await run_in_threadpool(self._kernel.audit.record_now, "billing.cancel_requested", actor=actor,
                                workspace=subject if subject.startswith("ws_") else None,
                                target_type="subscription", target_id=sub.subscription_id,
                                details={"at_period_end": at_period_end})
        return await run_in_threadpool(self.subscription, subject)

    async def resume(self, subject: str, *, actor: str | None = None) -> dict[str, Any]:
        """Undo a cancellation scheduled for the end of the period.

        :raises InvalidInput: ``not_canceling`` when none is scheduled.
        """
        name, provider = self.provider()
        sub = await self._live_at(name, subject)
        if not sub.cancel_at_period_end:
            raise InvalidInput("the subscription is not set to cancel", code="not_canceling")
        info = await self._call(name, "resume the subscription",
                                lambda: provider.resume_subscription(sub.subscription_id))
        await self.apply_info(name, info, subject)
        await run_in_threadpool(self._kernel.audit.record_now, "billing.resumed", actor=actor,
                                workspace=subject if subject.startswith("ws_") else None,
                                target_type="subscription", target_id=sub.subscription_id, details={})
        return await run_in_threadpool(self.subscription, subject)

    async def invoices(self, subject: str) -> list[dict[str, Any]]:
        """The subject's invoices at the provider, newest first (none before any checkout)."""
        name, provider = self.provider()
        customer = await run_in_threadpool(self._customer_of, name, subject)
        if customer is None:
            return []
        items = await self._call(name, "list invoices", lambda: provider.list_invoices(customer.customer_id))
        out = []
        for invoice in items:
            data = asdict(invoice)
            data["created_at"] = iso(invoice.created_at)
            out.append(data)
        return out

    async def assign(self, subject: str, plan: str, *, seats: int = 1, trial: bool = False,
                     interval: str = "month", currency: str | None = None) -> dict[str, Any]:
        """Put a subject on a plan without payment through the active provider (one that offers
        manual assignment, like ``local``); its events go through the state machine.

        :raises InvalidInput: ``manual_assignment_unsupported`` for providers that cannot.
        """
        check_interval(interval)
        name, provider = self.provider()
        assign = getattr(provider, "assign_subscription", None)
        if assign is None:
            raise InvalidInput(f"billing provider '{name}' does not support manual assignment: use a checkout",
                               code="manual_assignment_unsupported")
        catalog, version = await run_in_threadpool(self._catalog)
        currency = (currency or catalog.currency).lower()
        plan_obj = catalog.plan(plan)
        if plan_obj.flat_prices:
            self._price_of(catalog, version, plan, interval, currency, seats)
        if trial and not plan_obj.trial_days:
            raise InvalidInput(f"plan '{plan}' has no trial", code="no_trial")
        await assign(subject, plan, seats=seats, trial_days=plan_obj.trial_days if trial else 0,
                     interval=interval, currency=currency)
        return await run_in_threadpool(self.subscription, subject)

    # -- usage-based prices --------------------------------------------------------------------

    async def report_usage(self, subject: str | None = None) -> list[dict[str, Any]]:
        """Push the usage of metered features billed by usage-based prices to the providers
        (every subscription, or ``subject``'s): see :mod:`vendo.billing.usage`. Returns one
        result per batch reported or failed; failures are kept for the next run."""
        return await self.usage.run(subject=subject)

    async def _flush_usage(self, subject: str) -> None:
        """Report the subject's usage under its current terms before they change (best effort:
        what fails stays pending for the next run)."""
        try:
            await self.usage.run(subject=subject)
        except Exception as exc:  # the change goes on; the next run reports what is left
            log.warning("usage of %s not reported before its plan changed: %s: %s", subject, type(exc).__name__, exc)
