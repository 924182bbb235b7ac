"""Grandfathered prices at Stripe, on SQLite and PostgreSQL. Peer: the loopback stand-in
(Prices, Checkout Sessions, subscription updates). A subscriber who bought Enterprise before
the operator raised its price keeps paying the old Price when only the seat count changes, and
keeps the old version's entitlements; changing plan moves to the current prices and terms."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from billing_stripe_support import WEBHOOK_SECRET, StripeStandIn
from test_billing_stripe_kernel import CATALOG, WEBHOOK, Kernel, vendo_database_url  # noqa: F401 (both databases)
from vendo_billing_stripe.webhooks import signature_header

from vendo.entitlements.catalog import load_catalog


def test_a_seat_change_keeps_the_price_and_terms_the_subscriber_bought(
        stand_in: StripeStandIn, vendo_kernel: Any, vendo_client: Any, vendo_clock: Any, tmp_path: Path) -> None:
    world = Kernel(vendo_kernel, vendo_client, vendo_clock, stand_in.url)
    prices = asyncio.run(world.kernel.billing.sync_catalog())
    opened = world.post("checkout", {"plan": "enterprise", "seats": 5, "success_url": "https://app.test/ok",
                                     "cancel_url": "https://app.test/no"})
    assert opened.status_code == 201, opened.text
    paid = json.dumps(stand_in.complete_checkout(opened.json()["checkout_id"])).encode()
    headers = {"Stripe-Signature": signature_header(WEBHOOK_SECRET, paid, int(world.now().timestamp()))}
    assert world.client.post(WEBHOOK, content=paid, headers=headers).status_code == 200
    subscription = world.state()["subscription"]["id"]
    limit = world.kernel.entitlements.check(world.team, "chat").limit

    # the operator raises Enterprise's price and cuts its chat quota: version 2
    edited = tmp_path / "memento-v2.toml"
    edited.write_text(CATALOG.read_text().replace('amount = "49.90", per_seat = "3.90"',
                                                  'amount = "59.90", per_seat = "4.90"'))
    text = edited.read_text()
    start = text.index("[plans.enterprise.features]")
    chat = text.index("chat = ", start)
    end = text.index("\n", chat)
    edited.write_text(text[:chat] + "chat = 7" + text[end:])
    assert world.kernel.entitlements.load_catalog(load_catalog(edited)) == (2, True)
    prices = {**prices, **asyncio.run(world.kernel.billing.sync_catalog())}
    assert prices["vendo:enterprise:v2:month:eur"] != prices["vendo:enterprise:v1:month:eur"]

    more = world.post("change-plan", {"seats": 6})
    assert more.status_code == 200 and more.json()["applies"] == "now", more.text
    (update,) = [r for r in stand_in.calls("POST", f"/v1/subscriptions/{subscription}") if "items" in r.params]
    assert update.params["items"] == [{"id": update.params["items"][0]["id"],
                                       "price": prices["vendo:enterprise:v1:month:eur"], "quantity": "6"}]
    assert world.state()["subscription"]["seats"] == 6
    assert world.kernel.entitlements.check(world.team, "chat").limit == limit != 7  # version 1's terms

    # a plan change takes the current prices and terms
    assert world.post("change-plan", {"plan": "business"}).json()["applies"] == "period_end"
    (schedule,) = stand_in.of("subscription_schedule")
    assert schedule["phases"][1]["items"][0]["price"] == prices["vendo:business:v2:month:eur"]
