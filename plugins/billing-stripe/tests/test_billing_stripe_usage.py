"""Usage-based prices with vendo-billing-stripe inside a kernel, on SQLite and PostgreSQL.

Peer: the loopback stand-in (Prices, Billing Meters, meter events, Checkout Sessions,
subscription updates and Subscription Schedules: localstripe answers 404 to all of them). The
real SDK sends every request; the test checks what reached the peer: the catalog sync creates
a Billing Meter and a metered Price with a sub-cent ``unit_amount_decimal``, the checkout sells
it as a line item without a quantity, the kernel's usage reports become meter events (one per
batch, sent again unchanged when the answer was lost), and plan changes swap the metered item.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from billing_stripe_support import WEBHOOK_SECRET, StripeStandIn
from test_billing_stripe_kernel import WEBHOOK, Kernel, vendo_database_url  # noqa: F401 (SQLite and PostgreSQL)
from vendo_billing_stripe.webhooks import signature_header

from vendo.entitlements.catalog import load_catalog

CATALOG = Path(__file__).resolve().parents[3] / "examples" / "catalogs" / "metered-api.toml"
FLAT_KEY, USAGE_KEY = "vendo:metered:v2:month:eur", "vendo:metered:v2:month:eur:usage:api_calls"


def _world(stand_in: StripeStandIn, vendo_kernel: Any, vendo_client: Any, vendo_clock: Any) -> Kernel:
    world = Kernel(vendo_kernel, vendo_client, vendo_clock, stand_in.url)
    world.kernel.entitlements.load_catalog(load_catalog(CATALOG), source=str(CATALOG))
    return world


def _tick(world: Kernel) -> None:
    world.clock.set(world.clock() + timedelta(seconds=1))


def test_metered_price_checkout_usage_reports_and_plan_changes(stand_in: StripeStandIn, vendo_kernel: Any,
                                                               vendo_client: Any, vendo_clock: Any) -> None:
    world = _world(stand_in, vendo_kernel, vendo_client, vendo_clock)
    prices = asyncio.run(world.kernel.billing.sync_catalog())
    (meter,) = stand_in.of("billing.meter")
    assert meter["event_name"].endswith("api_calls") and meter["default_aggregation"]["formula"] == "sum"
    usage_price = next(p for p in stand_in.of("price") if p["lookup_key"] == USAGE_KEY)
    assert usage_price["recurring"]["usage_type"] == "metered" and usage_price["recurring"]["meter"] == meter["id"]
    assert usage_price["unit_amount_decimal"] == "0.2" and usage_price["unit_amount"] is None  # 0.2 cent a call
    # overage: a graduated metered price, the included calls free, then a cent a call
    overage = next(p for p in stand_in.of("price") if p["lookup_key"] == "vendo:overage:v2:month:eur:usage:api_calls")
    assert (overage["billing_scheme"], overage["tiers_mode"], overage["recurring"]["usage_type"]) == (
        "tiered", "graduated", "metered")
    assert [(t["up_to"], t["unit_amount"]) for t in overage["tiers"]] == [(1000, 0), (None, 1)]

    body = {"success_url": "https://app.test/ok", "cancel_url": "https://app.test/no", "plan": "metered"}
    opened = world.post("checkout", body)
    assert opened.status_code == 201, opened.text
    sent = stand_in.checkout_params[opened.json()["checkout_id"]]
    assert sent["line_items"] == [{"price": prices[FLAT_KEY], "quantity": "1"}, {"price": prices[USAGE_KEY]}]
    paid = stand_in.complete_checkout(opened.json()["checkout_id"])
    payload = json.dumps(paid).encode()
    headers = {"Stripe-Signature": signature_header(WEBHOOK_SECRET, payload, int(world.now().timestamp()))}
    assert world.client.post(WEBHOOK, content=payload, headers=headers).status_code == 200
    subscription = paid["data"]["object"]["subscription"]
    customer = paid["data"]["object"]["customer"]
    state = world.state()["subscription"]
    assert (state["id"], state["plan"], state["status"], state["seats"]) == (subscription, "metered", "active", 1)

    world.kernel.entitlements.consume(world.team, "api_calls", 1200)
    world.kernel.entitlements.track(world.team, "api_calls", 300)
    _tick(world)
    (result,) = asyncio.run(world.kernel.billing.report_usage())
    assert (result["status"], result["units"]) == ("reported", 1500)
    (event,) = stand_in.meter_events.values()
    assert event["event_name"] == meter["event_name"]
    assert event["payload"] == {"stripe_customer_id": customer, "value": "1500"}
    assert event["identifier"].startswith("vendo-usage-")
    assert asyncio.run(world.kernel.billing.report_usage()) == []

    # the answer of the next report is lost: it stays pending, and the retry (same identifier,
    # timestamp and Idempotency-Key) is answered by Stripe's replay: counted once
    world.kernel.entitlements.consume(world.team, "api_calls", 25)
    _tick(world)
    stand_in.lose_answer = lambda record: record.path == "/v1/billing/meter_events"
    (lost,) = asyncio.run(world.kernel.billing.report_usage())
    assert (lost["status"], lost["units"]) == ("failed", 25)
    stand_in.lose_answer = None
    _tick(world)
    (retried,) = asyncio.run(world.kernel.billing.report_usage())
    assert (retried["status"], retried["units"]) == ("reported", 25)
    assert sorted(int(e["payload"]["value"]) for e in stand_in.meter_events.values()) == [25, 1500]
    (status,) = world.kernel.billing.usage.status(world.team)
    assert (status["billed_units"], status["pending_units"]) == (1525, None)

    # upgrade to the flat plan now: the metered item is removed with the plan's item swapped
    up = world.post("change-plan", {"plan": "flat"})
    assert up.status_code == 200 and up.json()["applies"] == "now", up.text
    (update,) = [r for r in stand_in.calls("POST", f"/v1/subscriptions/{subscription}") if "items" in r.params]
    items = update.params["items"]
    assert items[0]["price"] == prices["vendo:flat:v2:month:eur"] and items[0]["quantity"] == "1"
    assert items[1]["deleted"] == "true" and len(items) == 2
    live = stand_in._get("subscription", subscription)
    assert [i["price"]["lookup_key"] for i in live["items"]["data"]] == ["vendo:flat:v2:month:eur"]
    world.kernel.entitlements.consume(world.team, "api_calls", 40)
    _tick(world)
    assert asyncio.run(world.kernel.billing.report_usage()) == []  # the flat plan bills no usage

    # back to the metered plan at the renewal: both of its prices in the schedule's next phase
    down = world.post("change-plan", {"plan": "metered"})
    assert down.status_code == 200 and down.json()["applies"] == "period_end", down.text
    (schedule,) = stand_in.of("subscription_schedule")
    assert schedule["phases"][0]["items"] == [{"price": prices["vendo:flat:v2:month:eur"], "quantity": "1"}]
    assert schedule["phases"][1]["items"] == [{"price": prices[FLAT_KEY], "quantity": "1"},
                                              {"price": prices[USAGE_KEY]}]


def test_a_checkout_of_a_metered_plan_before_the_catalog_sync_is_refused(
        stand_in: StripeStandIn, vendo_kernel: Any, vendo_client: Any, vendo_clock: Any) -> None:
    world = _world(stand_in, vendo_kernel, vendo_client, vendo_clock)
    asyncio.run(world.kernel.billing.sync_catalog())
    usage = next(p for p in stand_in.of("price") if p["lookup_key"] == USAGE_KEY)
    usage["active"] = False  # archived at Stripe (the Dashboard), so no active price has the key
    opened = world.post("checkout", {"success_url": "https://app.test/ok", "cancel_url": "https://app.test/no",
                                     "plan": "metered"})
    assert opened.status_code == 404 and opened.json()["error"]["code"] == "unknown_plan"
    assert USAGE_KEY in opened.json()["error"]["message"]
    assert stand_in.calls("POST", "/v1/checkout/sessions") == []
