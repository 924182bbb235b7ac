"""vendo-sdk's billing contract suite, run on the provider the kernel registers.

Peer: the loopback Stripe stand-in (the suite needs customer search, Prices, Checkout Sessions,
the Billing Portal, Billing Meters and invoices of checkout-made subscriptions: localstripe
answers few of them). Subscriptions are made as in production: the provider opens a Checkout
Session through the SDK, the stand-in plays the buyer paying it (as Stripe's hosted page
does) and hands back the ``checkout.session.completed`` event Stripe would deliver, which is
signed here with the endpoint secret at the kernel's clock, as Stripe signs.

The stand-in runs with ``search_lag`` on: a customer created through the API is never found
by Stripe's (eventually consistent) Search API within a test, so the suite's "same subject,
same customer" can only hold through the Idempotency-Key the provider derives from the
subject, which is what keeps real Stripe from making twins in the first minute.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import vendo_billing_stripe
from billing_stripe_support import API_KEY, WEBHOOK_SECRET, StripeStandIn
from vendo import CatalogPrice
from vendo_billing_stripe.webhooks import signature_header
from vendo_sdk.contracts import BillingProviderContract

#: The metered plan of the suite's catalog (its price bills :attr:`metered_feature`).
METERED_PLAN = "api"


class TestStripeBillingContract(BillingProviderContract):
    plugin = vendo_billing_stripe
    plugin_name = "billing-stripe"
    provider_name = "stripe"
    plan = "pro"
    other_plan = "team"
    metered_feature = "api_calls"
    unknown_subscription_id = "sub_vendo_contract_unknown"

    @pytest.fixture
    def kernel(self, vendo_kernel: Any, vendo_clock: Any, stand_in: StripeStandIn) -> Any:
        """A kernel holding only this plugin, pointed at the stand-in (search lagging).

        The kernel's frozen clock starts at Stripe's (the real) time: Stripe dates what it
        makes by its own clock and refuses meter events older than 35 days, so a kernel living
        in 2026-01-01 would report usage Stripe cannot take."""
        vendo_clock.set(datetime.now(UTC).replace(microsecond=0))
        stand_in.search_lag = True
        self.stand_in = stand_in
        return vendo_kernel({self.plugin_name: self.plugin}, providers={"billing": "stripe"},
                            plugin_settings={self.plugin_name: {
                                "api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET, "api_base": stand_in.url,
                                "max_network_retries": 0}})

    def catalog(self) -> list[Any]:
        """The suite's prices plus a metered one, so ``sync_catalog`` creates the Billing Meter
        that the usage reports' meter events are counted by (Stripe accepts events for an
        event name no meter watches, and drops them later with a ``no_meter_found`` error)."""
        return [*super().catalog(),
                CatalogPrice(lookup_key=self.price_key(METERED_PLAN), plan=METERED_PLAN, plan_name="API",
                             plan_version=self.catalog_version, interval="month", currency=self.currency,
                             unit_amount=2, metered_feature=self.metered_feature)]

    @staticmethod
    def _signed(provider: Any, event: dict[str, Any]) -> tuple[dict[str, str], bytes]:
        """``event`` as Stripe delivers it: the JSON body and its ``Stripe-Signature`` at now."""
        body = json.dumps(event).encode()
        return {"Stripe-Signature": signature_header(WEBHOOK_SECRET, body, int(provider.clock().timestamp()))}, body

    def signed_webhook(self, provider: Any) -> tuple[dict[str, str], bytes]:
        return self._signed(provider, {
            "id": "evt_contract_1", "object": "event", "type": "customer.subscription.updated",
            "created": int(provider.clock().timestamp()), "data": {"object": {
                "id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "active",
                "metadata": {"vendo_subject": "user-1", "vendo_plan": "pro"}, "cancel_at_period_end": False,
                "items": {"data": [{"id": "si_1", "quantity": 1, "current_period_end": 1_900_000_000,
                                    "price": {"id": "price_1", "lookup_key": "vendo:pro:v1:month:usd"}}]},
            }},
        })

    def checkout_completed_webhook(self, provider: Any, session: Any, request: Any) -> tuple[dict[str, str], bytes]:
        """The buyer pays the session at the stand-in; its event carries what the SDK sent."""
        return self._signed(provider, self.stand_in.complete_checkout(session.id))

    async def subscription_id(self, provider: Any) -> str:
        """A subscription made the production way: a checkout opened by the provider, paid."""
        subject = f"ws-contract-{uuid.uuid4().hex[:8]}"
        session = await provider.create_checkout(self._checkout_request(subject=subject,
                                                                        idempotency_key=f"chk-{subject}"))
        return self.stand_in.complete_checkout(session.id)["data"]["object"]["subscription"]

    def usage_total(self, provider: Any, subscription_id: str, feature: str) -> int | None:
        """The sum of the meter events the stand-in accepted for the subscription's customer.

        Real Stripe aggregates meter events asynchronously (its meter event summaries lag the
        events by minutes), so against Stripe's test mode this could only answer ``None``; the
        stand-in records each accepted event at once, which the suite can check exactly.
        """
        name = provider.meter_event_name(feature)
        assert any(m["event_name"] == name for m in self.stand_in.of("billing.meter")), (
            f"no Billing Meter counts {name!r}: the catalog sync should have created it")
        customer = self.stand_in.objects[subscription_id]["customer"]
        return sum(int(e["payload"]["value"]) for e in self.stand_in.meter_events.values()
                   if e["event_name"] == name and e["payload"]["stripe_customer_id"] == customer)

    # -- what this provider adds to the suite --------------------------------------------------

    @pytest.mark.asyncio
    async def test_cancel_now(self, provider: Any) -> None:
        """Cancel now is Stripe's ``DELETE /v1/subscriptions/{id}``, sent once."""
        await super().test_cancel_now(provider)
        (canceled,) = [s for s in self.stand_in.of("subscription") if s["status"] == "canceled"]
        deletes = [r.path for r in self.stand_in.requests if r.method == "DELETE"]
        assert deletes == [f"/v1/subscriptions/{canceled['id']}"]

    @pytest.mark.asyncio
    async def test_checkout_made_subscription_names_its_subject(self, provider: Any) -> None:
        """The subject travels to the subscription itself (``subscription_data.metadata``), so
        every later subscription and invoice event names it."""
        subscription = await self._running_subscription(provider)
        info = await provider.get_subscription(subscription)
        session = next(s for s in self.stand_in.of("checkout.session") if s["subscription"] == subscription)
        assert info.subject == session["client_reference_id"] == session["metadata"]["vendo_subject"]
        (invoice,) = await provider.list_invoices(info.customer_id)
        assert (invoice.subscription_id, invoice.amount_paid, invoice.status) == (subscription, 1000, "paid")

    @pytest.mark.asyncio
    async def test_customer_twins_are_prevented_while_search_lags(self, provider: Any) -> None:
        """Search finds nothing yet; the second create replays the first (same Idempotency-Key)."""
        first = await provider.create_customer("ws-lag", "ada@example.com")
        assert await provider.create_customer("ws-lag", "ada@example.com") == first
        creates = self.stand_in.calls("POST", "/v1/customers")
        assert len(creates) == 2 and creates[0].headers["idempotency-key"] == creates[1].headers["idempotency-key"]
        assert len(self.stand_in.of("customer")) == 1
