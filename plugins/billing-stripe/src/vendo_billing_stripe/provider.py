"""The Stripe billing provider: Vendo's :class:`vendo.BillingProvider` on the official SDK.

One :class:`stripe.StripeClient` per provider (never the global ``stripe.api_key``), on the
configured ``api_base``, through the SDK's async HTTPX client. The SDK is imported on first use.

How Vendo's concepts land at Stripe:

* a plan is a Product with id ``<product_id_prefix><plan>``; each catalog price a recurring Price
  found again by its ``lookup_key`` (``vendo:<plan>:v<version>:<interval>:<currency>``);
  a price with a per-seat amount is a graduated tiered Price (``flat_amount`` = base,
  ``unit_amount`` = per seat) sold with quantity = seats; a usage-based price (lookup key
  ending ``:usage:<feature>``) is a metered Price on a Billing Meter whose event name is
  ``<meter_event_prefix><feature>`` (``unit_amount_decimal`` below a cent), sold as an extra
  line item without quantity and fed by the kernel's usage reports as meter events (the
  report's key is the event ``identifier``, so a retried batch counts once);
* a checkout is a hosted Checkout Session in ``subscription`` mode whose session *and*
  subscription carry the metadata ``vendo_subject``/``vendo_plan`` (and
  ``client_reference_id`` = subject);
* an immediate change updates the subscription item with ``proration_behavior`` (default
  ``create_prorations``); a change ``at_period_end`` goes through a Subscription Schedule
  created from the subscription: the current phase ends with the period, the next phase bills
  the new price, then the schedule releases the subscription (Stripe's documented recipe for
  downgrades at renewal).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping

from vendo import (
    BillingEvent,
    CatalogPrice,
    CheckoutRequest,
    CheckoutSession,
    Conflict,
    InvalidInput,
    Invoice,
    NotFound,
    PortalSession,
    ProviderNotConfigured,
    SubscriptionChange,
    SubscriptionInfo,
    UsageReport,
)

from vendo_billing_stripe import objects as o
from vendo_billing_stripe import webhooks
from vendo_billing_stripe.errors import translate

if TYPE_CHECKING:  # pragma: no cover
    import stripe

    from vendo_billing_stripe import Settings

#: Stripe accepts at most this many keys in one ``lookup_keys`` filter.
LOOKUP_BATCH = 10


def _digest(*parts: Any) -> str:
    """A short stable hash of ``parts`` for idempotency keys derived from a request's content."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _search_literal(value: str) -> str:
    """``value`` quoted for Stripe's search query language."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class StripeBillingProvider:
    """Billing through Stripe (see the module docstring for the mapping)."""

    name = "stripe"

    def __init__(self, settings: Settings, clock: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.clock = clock or (lambda: datetime.now(UTC))
        self._client: stripe.StripeClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    # -- plumbing ------------------------------------------------------------------------

    @property
    def client(self) -> stripe.StripeClient:
        """The provider's own Stripe client, built on first use in each event loop (the SDK's
        async HTTP connections belong to the loop that opened them: a CLI running one
        ``asyncio.run`` per command gets a fresh client each time)."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if self._client is None or self._client_loop is not loop:
            if self.settings.api_key is None or not self.settings.api_key.get_secret_value():
                raise ProviderNotConfigured("Stripe billing needs an API key: set [billing-stripe] api_key "
                                            "(or VENDO_BILLING_STRIPE__API_KEY)")
            import stripe

            base = self.settings.api_base.rstrip("/")
            self._client = stripe.StripeClient(
                self.settings.api_key.get_secret_value(),
                base_addresses={"api": base, "meter_events": self.settings.meter_events_base or base},
                max_network_retries=self.settings.max_network_retries,
                http_client=stripe.HTTPXClient(timeout=self.settings.timeout),
            )
            self._client_loop = loop
        return self._client

    async def _call(self, what: str, call: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
        """Run one SDK call; return its object as a plain dict (Stripe's JSON), and turn the
        SDK's exceptions into Vendo errors."""
        self.client  # noqa: B018 -- raises ProviderNotConfigured before anything is imported
        import stripe

        try:
            return (await call()).to_dict()
        except stripe.StripeError as exc:
            raise translate(exc, what) from None

    def _options(self, key: str) -> dict[str, Any]:
        return {"idempotency_key": key[:255]}

    def product_id(self, plan: str) -> str:
        """The Stripe Product id of a Vendo plan."""
        return f"{self.settings.product_id_prefix}{plan}"

    def meter_event_name(self, feature: str) -> str:
        """The Billing Meter event name of a metered feature."""
        return self.settings.meter_event_prefix + re.sub(r"[^A-Za-z0-9_]", "_", feature)

    # -- customers -----------------------------------------------------------------------

    async def create_customer(self, subject: str, email: str | None = None) -> str:
        """The customer whose metadata ``vendo_subject`` is ``subject``: found by search, else
        created (idempotency key derived from subject and email, so a retry never makes two)."""
        query = f"metadata['vendo_subject']:{_search_literal(subject)}"
        found = await self._call("search customers", lambda: self.client.v1.customers.search_async(
            {"query": query, "limit": 1}))
        if found["data"]:
            return found["data"][0]["id"]
        params: dict[str, Any] = {"metadata": {"vendo_subject": subject}}
        if email:
            params["email"] = email
        customer = await self._call("create customer", lambda: self.client.v1.customers.create_async(
            params, self._options(f"vendo-customer-{_digest(subject, email)}")))
        return customer["id"]

    # -- prices --------------------------------------------------------------------------

    async def _prices_by_key(self, keys: list[str]) -> dict[str, Any]:
        """Active prices by lookup key (Stripe filters at most ten keys at a time)."""
        found: dict[str, Any] = {}
        for start in range(0, len(keys), LOOKUP_BATCH):
            batch = keys[start:start + LOOKUP_BATCH]
            page = await self._call("list prices", lambda batch=batch: self.client.v1.prices.list_async(
                {"lookup_keys": batch, "active": True, "limit": LOOKUP_BATCH}))
            for price in page["data"]:
                found[price["lookup_key"]] = price
        return found

    async def _price(self, price_key: str | None, plan: str | None, interval: str, currency: str) -> Any:
        """The price to sell: by lookup key, else the newest version of ``plan`` at
        ``interval`` and ``currency``.

        :raises NotFound: ``unknown_plan`` when there is none (catalog not synced, or a typo).
        """
        if price_key:
            price = (await self._prices_by_key([price_key])).get(price_key)
            if price is None:
                raise NotFound(f"no active Stripe price has the lookup key '{price_key}' (run the catalog sync)",
                               code="unknown_plan", details={"price_key": price_key})
            return price
        if not plan:
            raise InvalidInput("name a plan or a price key", code="unknown_plan")
        missing = NotFound(f"Stripe has no active {interval}ly {currency.upper()} price of plan '{plan}' "
                           "(run the catalog sync)", code="unknown_plan",
                           details={"plan": plan, "interval": interval, "currency": currency})
        try:
            page = await self._call("list prices", lambda: self.client.v1.prices.list_async({
                "product": self.product_id(plan), "active": True, "currency": currency.lower(),
                "type": "recurring", "recurring": {"interval": interval}, "limit": 100}))
        except NotFound:  # Stripe answers "No such product" for a plan never synced
            raise missing from None
        candidates = [p for p in page["data"] if o.plan_from_lookup_key(p.get("lookup_key")) == plan
                      and not o.is_metered(p)]
        if not candidates:
            raise missing
        return max(candidates, key=lambda p: o.version_from_lookup_key(p["lookup_key"]))

    @staticmethod
    def _quantity(price: Any, seats: int | None) -> int:
        """The item quantity for ``seats`` on ``price``: seats (at least the minimum) on a
        per-seat price, 1 otherwise."""
        meta = o.metadata(price)
        if meta.get("vendo_per_seat") != "true":
            return 1
        return max(int(seats or 1), int(meta.get("vendo_min_seats", "1") or 1))

    async def _usage_prices(self, keys: tuple[str, ...]) -> list[Any]:
        """The metered prices of ``keys`` (usage-based prices sold beside the plan's price).

        :raises NotFound: ``unknown_plan`` for a key with no active price (run the catalog sync).
        """
        if not keys:
            return []
        found = await self._prices_by_key(list(keys))
        missing = [key for key in keys if key not in found]
        if missing:
            raise NotFound(f"no active Stripe price has the lookup key '{missing[0]}' (run the catalog sync)",
                           code="unknown_plan", details={"price_key": missing[0]})
        return [found[key] for key in keys]

    # -- checkout and portal ---------------------------------------------------------------

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        """A hosted Checkout Session (subscription mode) for the request's price and seats."""
        if not request.success_url:
            raise InvalidInput("a hosted checkout needs a success_url", code="invalid_input",
                               details={"field": "success_url"})
        price = await self._price(request.price_key, request.plan, request.interval, request.currency)
        plan = o.plan_of_price(price) or request.plan
        quantity = self._quantity(price, request.seats)
        meta = {**{str(k): str(v) for k, v in request.metadata.items()},
                "vendo_subject": request.subject, "vendo_plan": plan, "vendo_interval": request.interval,
                "vendo_seats": str(quantity), "vendo_price_key": price.get("lookup_key") or ""}
        subscription_data: dict[str, Any] = {"metadata": meta}
        usage = await self._usage_prices(request.usage_price_keys)
        params: dict[str, Any] = {
            "mode": "subscription",
            # metered prices take no quantity: Stripe bills them from the meter in arrears
            "line_items": [{"price": price["id"], "quantity": quantity}] + [{"price": u["id"]} for u in usage],
            "success_url": request.success_url,
            "client_reference_id": request.subject,
            "metadata": meta,
            "subscription_data": subscription_data,
        }
        if request.cancel_url:
            params["cancel_url"] = request.cancel_url
        if request.trial_days > 0:
            subscription_data["trial_period_days"] = request.trial_days
            if not self.settings.trial_requires_card:
                params["payment_method_collection"] = "if_required"
                subscription_data["trial_settings"] = {"end_behavior": {"missing_payment_method": "cancel"}}
        if request.customer_id:
            params["customer"] = request.customer_id
        elif request.customer_email:
            params["customer_email"] = request.customer_email
        if self.settings.automatic_tax:
            params["automatic_tax"] = {"enabled": True}
        if self.settings.allow_promotion_codes:
            params["allow_promotion_codes"] = True
        key = request.idempotency_key or f"vendo-checkout-{_digest(params)}"
        session = await self._call("create checkout session", lambda: self.client.v1.checkout.sessions.create_async(
            params, self._options(key)))
        return CheckoutSession(id=session["id"], url=session["url"], customer_id=o.object_id(session.get("customer")))

    async def create_portal(self, customer_id: str, return_url: str) -> PortalSession:
        """A Customer Portal session (a fresh idempotency key per call covers the SDK's retries)."""
        params: dict[str, Any] = {"customer": customer_id, "return_url": return_url}
        if self.settings.portal_configuration:
            params["configuration"] = self.settings.portal_configuration
        session = await self._call("create portal session", lambda: self.client.v1.billing_portal.sessions.create_async(
            params, self._options(f"vendo-portal-{uuid.uuid4().hex}")))
        return PortalSession(id=session["id"], url=session["url"])

    # -- subscriptions -----------------------------------------------------------------------

    async def _subscription(self, subscription_id: str) -> Any:
        return await self._call("retrieve subscription", lambda: self.client.v1.subscriptions.retrieve_async(
            subscription_id))

    async def get_subscription(self, subscription_id: str) -> SubscriptionInfo:
        """The subscription as Stripe holds it.

        :raises NotFound: unknown subscription.
        """
        return o.subscription_info(await self._subscription(subscription_id))

    async def change_subscription(self, change: SubscriptionChange) -> SubscriptionInfo:
        """Change plan and/or seats: now with proration, or at the end of the period through a
        subscription schedule. A pending scheduled change is released by an immediate one."""
        subscription = await self._subscription(change.subscription_id)
        if subscription["status"] in ("canceled", "incomplete_expired"):
            raise Conflict("this subscription has ended; open a new checkout", code="subscription_ended",
                           details={"subscription_id": change.subscription_id})
        item = o.first_item(subscription)
        current_price = o.price_of(item)
        price = current_price
        if change.price_key or change.plan:
            interval = o.field(current_price, "recurring", "interval") or o.field(current_price, "interval") or "month"
            currency = o.field(current_price, "currency") or "usd"
            price = await self._price(change.price_key, change.plan, interval, currency)
        quantity = self._quantity(price, change.seats if change.seats is not None else o.seats(subscription))
        plan = o.plan_of_price(price) or change.plan or o.subscription_plan(subscription)
        key = change.idempotency_key or f"vendo-change-{uuid.uuid4().hex}"
        current_usage = o.usage_items(subscription)
        usage = [o.price_of(i) for i in current_usage] if change.usage_price_keys is None else \
            await self._usage_prices(change.usage_price_keys)
        if change.at_period_end:
            await self._schedule_change(subscription, item, price, quantity, plan, key, usage)
            return o.subscription_info(await self._subscription(change.subscription_id))
        schedule = o.object_id(subscription.get("schedule"))
        if schedule:
            await self._call("release subscription schedule",
                             lambda: self.client.v1.subscription_schedules.release_async(
                                 schedule, {}, self._options(f"{key}-release")))
        wanted = {o.object_id(u) for u in usage}
        kept = {o.object_id(o.price_of(i)) for i in current_usage}
        params: dict[str, Any] = {
            "items": [{"id": item["id"], "price": o.object_id(price), "quantity": quantity}]
            + [{"id": i["id"], "deleted": True} for i in current_usage if o.object_id(o.price_of(i)) not in wanted]
            + [{"price": price_id} for price_id in sorted(p for p in wanted if p not in kept)],
            "proration_behavior": self.settings.proration_behavior,
        }
        if plan:
            params["metadata"] = {"vendo_plan": plan}
        updated = await self._call("update subscription", lambda: self.client.v1.subscriptions.update_async(
            change.subscription_id, params, self._options(key)))
        return o.subscription_info(updated)

    async def _schedule_change(self, subscription: Any, item: Any, price: Any, quantity: int, plan: str | None,
                               key: str, usage: list[Any]) -> None:
        """Bill ``price`` × ``quantity`` (and the metered ``usage`` prices) from the next renewal
        on: the subscription's schedule (created from it when it has none) gets two phases, now
        → period end on the current prices, then the new ones, and releases the subscription
        afterwards."""
        schedule_id = o.object_id(subscription.get("schedule"))
        if schedule_id:
            schedule = await self._call("retrieve subscription schedule",
                                        lambda: self.client.v1.subscription_schedules.retrieve_async(schedule_id))
        else:
            schedule = await self._call("create subscription schedule",
                                        lambda: self.client.v1.subscription_schedules.create_async(
                                            {"from_subscription": subscription["id"]}, self._options(f"{key}-schedule")))
        start = o.field(schedule, "current_phase", "start_date") or o.field(item, "current_period_start") or \
            o.field(subscription, "current_period_start")
        end = o.field(item, "current_period_end") or o.field(subscription, "current_period_end")
        current_price = o.price_of(item)
        next_meta = {**o.metadata(subscription), **({"vendo_plan": plan} if plan else {})}
        params = {
            "end_behavior": "release",
            "proration_behavior": "none",
            "phases": [
                {"items": [{"price": o.object_id(current_price), "quantity": o.seats(subscription)}]
                 + [{"price": o.object_id(o.price_of(i))} for i in o.usage_items(subscription)],
                 "start_date": start, "end_date": end},
                {"items": [{"price": o.object_id(price), "quantity": quantity}]
                 + [{"price": o.object_id(u)} for u in usage], "metadata": next_meta},
            ],
        }
        await self._call("update subscription schedule", lambda: self.client.v1.subscription_schedules.update_async(
            schedule["id"], params, self._options(f"{key}-phases")))

    async def cancel_subscription(self, subscription_id: str, at_period_end: bool = True) -> None:
        """Cancel now, or at the end of the paid period (releasing a pending scheduled change
        first, as Stripe requires). Cancelling an ended subscription does nothing."""
        subscription = await self._subscription(subscription_id)
        if subscription["status"] in ("canceled", "incomplete_expired"):
            return
        key = f"vendo-cancel-{uuid.uuid4().hex}"
        if not at_period_end:
            try:
                await self._call("cancel subscription", lambda: self.client.v1.subscriptions.cancel_async(
                    subscription_id, {}, self._options(key)))
            except NotFound:
                # Stripe ignores idempotency keys on DELETE: when the answer of a cancellation that
                # went through was lost, the SDK's retry is told "No such subscription" (Stripe's
                # answer for a canceled one). Canceled is what was asked.
                if (await self._subscription(subscription_id))["status"] != "canceled":
                    raise
            return
        schedule = o.object_id(subscription.get("schedule"))
        if schedule:
            await self._call("release subscription schedule",
                             lambda: self.client.v1.subscription_schedules.release_async(
                                 schedule, {}, self._options(f"{key}-release")))
        await self._call("cancel subscription at period end", lambda: self.client.v1.subscriptions.update_async(
            subscription_id, {"cancel_at_period_end": True}, self._options(key)))

    async def resume_subscription(self, subscription_id: str) -> SubscriptionInfo:
        """Undo a cancellation scheduled for the period end.

        :raises Conflict: ``subscription_ended`` when it is already canceled.
        """
        subscription = await self._subscription(subscription_id)
        if subscription["status"] in ("canceled", "incomplete_expired"):
            raise Conflict("this subscription has ended and cannot be resumed; open a new checkout",
                           code="subscription_ended", details={"subscription_id": subscription_id})
        if subscription.get("cancel_at_period_end"):
            params: dict[str, Any] = {"cancel_at_period_end": False}
        elif subscription.get("cancel_at"):  # a cancellation on a chosen date (Dashboard, API): unset it
            params = {"cancel_at": ""}
        else:
            return o.subscription_info(subscription)
        updated = await self._call("resume subscription", lambda: self.client.v1.subscriptions.update_async(
            subscription_id, params, self._options(f"vendo-resume-{uuid.uuid4().hex}")))
        return o.subscription_info(updated)

    # -- invoices and usage ----------------------------------------------------------------

    async def list_invoices(self, customer_id: str) -> list[Invoice]:
        """The customer's invoices, newest first (Stripe's order), up to ``invoice_limit``."""
        page = await self._call("list invoices", lambda: self.client.v1.invoices.list_async(
            {"customer": customer_id, "limit": self.settings.invoice_limit}))
        invoices = [o.invoice(i) for i in page["data"]]
        return sorted(invoices, key=lambda i: i.created_at, reverse=True)

    async def report_usage(self, report: UsageReport) -> None:
        """Send a Billing Meter event (``identifier`` = the report's idempotency key, so Stripe
        counts a retried report once)."""
        if report.quantity < 0:
            raise InvalidInput("usage quantities are positive", code="invalid_input", details={"field": "quantity"})
        if report.quantity == 0:
            return
        customer = report.customer_id
        if not customer:
            customer = o.object_id((await self._subscription(report.subscription_id)).get("customer"))
        moment = report.timestamp if report.timestamp.tzinfo else report.timestamp.replace(tzinfo=UTC)
        params = {
            "event_name": self.meter_event_name(report.feature),
            "identifier": report.idempotency_key[:100],
            "timestamp": int(moment.timestamp()),
            "payload": {"stripe_customer_id": customer, "value": str(report.quantity)},
        }
        await self._call("report usage", lambda: self.client.v1.billing.meter_events.create_async(
            params, self._options(f"vendo-usage-{report.idempotency_key}")))

    # -- catalog ---------------------------------------------------------------------------

    async def _ensure_product(self, price: CatalogPrice) -> str:
        product_id = self.product_id(price.plan)
        try:
            await self._call("retrieve product", lambda: self.client.v1.products.retrieve_async(product_id))
        except NotFound:
            await self._call("create product", lambda: self.client.v1.products.create_async(
                {"id": product_id, "name": price.plan_name or price.plan, "metadata": {"vendo_plan": price.plan}},
                self._options(f"vendo-product-{product_id}")))
        return product_id

    async def _meters(self) -> dict[str, str]:
        """The active Billing Meters by event name."""
        page = await self._call("list meters", lambda: self.client.v1.billing.meters.list_async(
            {"status": "active", "limit": 100}))
        return {m["event_name"]: m["id"] for m in page["data"]}

    async def _ensure_meter(self, feature: str, meters: dict[str, str]) -> str:
        name = self.meter_event_name(feature)
        if name not in meters:
            meter = await self._call("create meter", lambda: self.client.v1.billing.meters.create_async({
                "display_name": feature, "event_name": name, "default_aggregation": {"formula": "sum"},
                "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
                "value_settings": {"event_payload_key": "value"},
            }, self._options(f"vendo-meter-{name}")))
            meters[name] = meter["id"]
        return meters[name]

    def _price_params(self, price: CatalogPrice, product: str, meter: str | None) -> dict[str, Any]:
        per_seat = price.per_seat_amount > 0 and not price.metered_feature
        params: dict[str, Any] = {
            "product": product,
            "currency": price.currency.lower(),
            "lookup_key": price.lookup_key,
            "nickname": f"{price.plan_name or price.plan} v{price.plan_version} "
                        f"({price.interval}, {price.currency.upper()})",
            "recurring": {"interval": price.interval},
            "metadata": {"vendo_plan": price.plan, "vendo_plan_version": str(price.plan_version),
                         "vendo_min_seats": str(max(price.min_seats, 1)),
                         "vendo_per_seat": "true" if per_seat else "false",
                         "vendo_trial_days": str(price.trial_days)},
        }
        if price.metered_feature:
            params["recurring"].update({"usage_type": "metered", "meter": meter})
            exact = price.unit_amount_decimal
            unit = {"unit_amount_decimal": exact} if exact is not None and Decimal(exact) != price.unit_amount \
                else {"unit_amount": price.unit_amount}  # a fraction of the minor unit, or whole ones
            if price.included_units > 0:  # overage: the included units free, then the unit price
                params.update({"billing_scheme": "tiered", "tiers_mode": "graduated", "tiers": [
                    {"up_to": price.included_units, "unit_amount": 0}, {"up_to": "inf", **unit}]})
            else:
                params.update(unit)
            params["metadata"]["vendo_metered_feature"] = price.metered_feature
        elif per_seat and price.unit_amount > 0:
            params.update({"billing_scheme": "tiered", "tiers_mode": "graduated",
                           "tiers": [{"up_to": "inf", "flat_amount": price.unit_amount,
                                      "unit_amount": price.per_seat_amount}]})
        else:
            params["unit_amount"] = price.per_seat_amount if per_seat else price.unit_amount
        return params

    async def sync_catalog(self, prices: list[CatalogPrice]) -> dict[str, str]:
        """Find each price by lookup key, else create it (and its plan's product, and its meter
        when metered). Running it again changes nothing. Returns ``{lookup_key: price id}``."""
        existing = await self._prices_by_key([p.lookup_key for p in prices])
        result = {key: price["id"] for key, price in existing.items()}
        products: dict[str, str] = {}
        missing = [p for p in prices if p.lookup_key not in result]
        meters = await self._meters() if any(p.metered_feature for p in missing) else {}
        for price in missing:
            if price.plan not in products:
                products[price.plan] = await self._ensure_product(price)
            meter = await self._ensure_meter(price.metered_feature, meters) if price.metered_feature else None
            params = self._price_params(price, products[price.plan], meter)
            options = self._options(f"vendo-price-{price.lookup_key}")
            created = await self._call("create price", lambda params=params, options=options:
                                       self.client.v1.prices.create_async(params, options))
            result[price.lookup_key] = created["id"]
        return result

    # -- webhooks --------------------------------------------------------------------------

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[BillingEvent]:
        """Verify ``Stripe-Signature`` against ``webhook_secret`` (constant-time, with the
        tolerance) and translate the event (see :mod:`vendo_billing_stripe.webhooks`).

        :raises InvalidSignature: bad, missing or stale signature.
        """
        secret = self.settings.webhook_secret
        if secret is None or not secret.get_secret_value():
            raise ProviderNotConfigured("Stripe webhooks need the endpoint's signing secret: set "
                                        "[billing-stripe] webhook_secret (whsec_...)")
        webhooks.verify(headers, body, secret.get_secret_value(), self.clock(), self.settings.webhook_tolerance)
        return webhooks.translate(webhooks.parse(body))
