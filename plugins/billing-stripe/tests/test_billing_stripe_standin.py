"""The provider's real SDK calls for what localstripe does not answer (Prices, Checkout
Sessions, the Billing Portal, Billing Meters and meter events, Subscription Schedules, customer
search), against the loopback :class:`StripeStandIn`, which checks each request the SDK sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from billing_stripe_support import API_KEY, StripeStandIn
from vendo import (
    CatalogPrice,
    CheckoutRequest,
    Conflict,
    InvalidInput,
    NotFound,
    ProviderNotConfigured,
    ProviderUnavailable,
    SubscriptionChange,
    UsageReport,
)


def catalog() -> list[CatalogPrice]:
    """Free-standing plans of the tests: ``pro`` (flat), ``team`` (base + per seat, 3 seats
    minimum, two currencies), ``api`` (metered)."""
    return [
        CatalogPrice("vendo:pro:v1:month:usd", "pro", "Pro", 1, "month", "usd", 1200),
        CatalogPrice("vendo:pro:v1:year:usd", "pro", "Pro", 1, "year", "usd", 12000),
        CatalogPrice("vendo:team:v2:month:usd", "team", "Team", 2, "month", "usd", 5000, per_seat_amount=800,
                     min_seats=3),
        CatalogPrice("vendo:team:v2:month:eur", "team", "Team", 2, "month", "eur", 4600, per_seat_amount=750,
                     min_seats=3),
        CatalogPrice("vendo:api:v1:month:usd", "api", "API", 1, "month", "usd", 2, metered_feature="api.calls"),
    ]


async def synced(stand_in: StripeStandIn, provider: Any) -> dict[str, str]:
    return await provider.sync_catalog(catalog())


# -- customers -------------------------------------------------------------------------------


async def test_customer_is_found_by_subject_before_one_is_created(stand_in: StripeStandIn,
                                                                   make_provider: Any) -> None:
    """Peer: stand-in (customer search by metadata; localstripe has no search)."""
    provider = make_provider(stand_in.url)
    first = await provider.create_customer("ws-1", "ada@example.com")
    assert await provider.create_customer("ws-1", "ada@example.com") == first
    assert await provider.create_customer("ws-2") != first
    (created, _) = stand_in.calls("POST", "/v1/customers")
    assert created.params == {"email": "ada@example.com", "metadata": {"vendo_subject": "ws-1"}}
    assert created.headers["idempotency-key"].startswith("vendo-customer-")
    assert created.headers["authorization"] == f"Bearer {API_KEY}"
    search = stand_in.calls("GET", "/v1/customers/search")[0]
    assert search.params["query"] == "metadata['vendo_subject']:'ws-1'"


async def test_a_subject_with_a_quote_is_searched_literally(stand_in: StripeStandIn, make_provider: Any) -> None:
    """Peer: stand-in."""
    provider = make_provider(stand_in.url)
    odd = "o'brien\\ws"
    customer = await provider.create_customer(odd)
    assert await provider.create_customer(odd) == customer
    assert stand_in.objects[customer]["metadata"]["vendo_subject"] == odd


# -- catalog ---------------------------------------------------------------------------------


async def test_catalog_sync_creates_products_prices_and_meters_once(stand_in: StripeStandIn,
                                                                     make_provider: Any) -> None:
    """Peer: stand-in (Prices, Products by id, Billing Meters)."""
    provider = make_provider(stand_in.url)
    ids = await synced(stand_in, provider)
    assert set(ids) == {p.lookup_key for p in catalog()}
    assert {stand_in.objects[i]["lookup_key"] for i in ids.values()} == set(ids)

    products = {r.params["id"]: r.params for r in stand_in.calls("POST", "/v1/products")}
    assert set(products) == {"vendo_pro", "vendo_team", "vendo_api"}
    assert products["vendo_team"] == {"id": "vendo_team", "name": "Team", "metadata": {"vendo_plan": "team"}}

    prices = {r.params["lookup_key"]: r for r in stand_in.calls("POST", "/v1/prices")}
    flat = prices["vendo:pro:v1:month:usd"]
    assert flat.params["unit_amount"] == "1200" and flat.params["recurring"] == {"interval": "month"}
    assert flat.params["product"] == "vendo_pro" and flat.params["currency"] == "usd"
    assert flat.headers["idempotency-key"] == "vendo-price-vendo:pro:v1:month:usd"
    seat = prices["vendo:team:v2:month:eur"].params
    assert (seat["billing_scheme"], seat["tiers_mode"]) == ("tiered", "graduated")
    assert seat["tiers"] == [{"up_to": "inf", "flat_amount": "4600", "unit_amount": "750"}]
    assert seat["metadata"] == {"vendo_plan": "team", "vendo_plan_version": "2", "vendo_min_seats": "3",
                                "vendo_per_seat": "true", "vendo_trial_days": "0"}
    metered = prices["vendo:api:v1:month:usd"].params
    (meter,) = stand_in.calls("POST", "/v1/billing/meters")
    assert meter.params["event_name"] == "vendo_api_calls" and meter.params["default_aggregation"] == {"formula": "sum"}
    assert meter.params["customer_mapping"] == {"type": "by_id", "event_payload_key": "stripe_customer_id"}
    meter_id = stand_in.objects[ids["vendo:api:v1:month:usd"]]["recurring"]["meter"]
    assert metered["recurring"] == {"interval": "month", "usage_type": "metered", "meter": meter_id}

    posts = len([r for r in stand_in.requests if r.method == "POST"])
    assert await provider.sync_catalog(catalog()) == ids  # found by lookup key: nothing created
    assert len([r for r in stand_in.requests if r.method == "POST"]) == posts


async def test_catalog_sync_looks_keys_up_ten_at_a_time_and_reuses_an_existing_product(
        stand_in: StripeStandIn, make_provider: Any) -> None:
    """Peer: stand-in (it rejects more than ten lookup keys per list, as Stripe does)."""
    provider = make_provider(stand_in.url)
    many = [CatalogPrice(f"vendo:pro:v{v}:month:usd", "pro", "Pro", v, "month", "usd", 1000 + v) for v in range(1, 24)]
    ids = await provider.sync_catalog(many)
    assert len(ids) == 23 and len(set(ids.values())) == 23
    assert len(stand_in.calls("POST", "/v1/products")) == 1
    assert [len(r.params["lookup_keys"]) for r in stand_in.calls("GET", "/v1/prices")] == [10, 10, 3]


# -- checkout and portal ---------------------------------------------------------------------


async def test_checkout_sells_the_price_of_the_lookup_key_with_seats_and_trial(stand_in: StripeStandIn,
                                                                            make_provider: Any) -> None:
    """Peer: stand-in (Checkout Sessions). With ``trial_requires_card`` the trial takes a card."""
    provider = make_provider(stand_in.url, trial_requires_card=True)
    ids = await synced(stand_in, provider)
    request = CheckoutRequest(subject="ws-1", plan="team", currency="eur", seats=2, trial_days=14,
                              success_url="https://app.test/ok?session={CHECKOUT_SESSION_ID}",
                              cancel_url="https://app.test/cancel", customer_email="ada@example.com",
                              idempotency_key="chk-ws-1", price_key="vendo:team:v2:month:eur",
                              metadata={"campaign": "spring"})
    session = await provider.create_checkout(request)
    assert session.id.startswith("cs_test_") and session.url.startswith("https://checkout.stripe.com/")
    (sent,) = stand_in.calls("POST", "/v1/checkout/sessions")
    meta = {"campaign": "spring", "vendo_subject": "ws-1", "vendo_plan": "team", "vendo_interval": "month",
            "vendo_seats": "3", "vendo_price_key": "vendo:team:v2:month:eur"}
    assert sent.params == {
        "mode": "subscription",
        "line_items": [{"price": ids["vendo:team:v2:month:eur"], "quantity": "3"}],  # at least 3 seats
        "success_url": "https://app.test/ok?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://app.test/cancel",
        "client_reference_id": "ws-1",
        "customer_email": "ada@example.com",
        "metadata": meta,
        "subscription_data": {"metadata": meta, "trial_period_days": "14"},
    }
    assert sent.headers["idempotency-key"] == "chk-ws-1"
    again = await provider.create_checkout(request)
    assert again.id == session.id  # the key replays the first answer
    assert len([s for s in stand_in.objects.values() if s["object"] == "checkout.session"]) == 1


async def test_checkout_without_a_price_key_sells_the_newest_plan_version(stand_in: StripeStandIn,
                                                                        make_provider: Any) -> None:
    """Peer: stand-in. By default a trial asks for no card (seed 003's trial without card)."""
    provider = make_provider(stand_in.url, automatic_tax=True, allow_promotion_codes=True)
    old_and_new = [CatalogPrice("vendo:pro:v1:month:usd", "pro", "Pro", 1, "month", "usd", 1000),
                   CatalogPrice("vendo:pro:v3:month:usd", "pro", "Pro", 3, "month", "usd", 1500),
                   CatalogPrice("vendo:pro:v2:month:usd", "pro", "Pro", 2, "month", "usd", 1200),
                   CatalogPrice("vendo:pro:v9:year:usd", "pro", "Pro", 9, "year", "usd", 9000)]
    ids = await provider.sync_catalog(old_and_new)
    customer = await provider.create_customer("ws-1")
    await provider.create_checkout(CheckoutRequest(subject="ws-1", plan="pro", seats=5, trial_days=14,
                                                   success_url="https://app.test/ok", customer_id=customer))
    (sent,) = stand_in.calls("POST", "/v1/checkout/sessions")
    assert sent.params["line_items"] == [{"price": ids["vendo:pro:v3:month:usd"], "quantity": "1"}]  # not per seat
    assert sent.params["customer"] == customer and "customer_email" not in sent.params
    assert "cancel_url" not in sent.params  # Stripe's default: back to the previous page
    assert sent.params["payment_method_collection"] == "if_required"
    assert sent.params["subscription_data"]["trial_settings"] == {"end_behavior": {"missing_payment_method": "cancel"}}
    assert sent.params["automatic_tax"] == {"enabled": "true"} and sent.params["allow_promotion_codes"] == "true"
    assert sent.headers["idempotency-key"].startswith("vendo-checkout-")


async def test_checkout_of_an_unknown_price_is_unknown_plan(stand_in: StripeStandIn, make_provider: Any) -> None:
    """Peer: stand-in."""
    provider = make_provider(stand_in.url)
    await synced(stand_in, provider)
    for request in (CheckoutRequest(subject="ws", plan="pro", price_key="vendo:pro:v7:month:usd",
                                    success_url="https://app.test/ok"),
                    CheckoutRequest(subject="ws", plan="gold", success_url="https://app.test/ok"),
                    CheckoutRequest(subject="ws", plan="pro", currency="jpy", success_url="https://app.test/ok")):
        with pytest.raises(NotFound) as caught:
            await provider.create_checkout(request)
        assert caught.value.code == "unknown_plan" and caught.value.status_code == 404
    with pytest.raises(InvalidInput):
        await provider.create_checkout(CheckoutRequest(subject="ws", plan="pro"))  # no success_url
    assert stand_in.calls("POST", "/v1/checkout/sessions") == []


async def test_portal_session(stand_in: StripeStandIn, make_provider: Any) -> None:
    """Peer: stand-in (Billing Portal)."""
    provider = make_provider(stand_in.url, portal_configuration="bpc_123")
    customer = await provider.create_customer("ws-1")
    portal = await provider.create_portal(customer, "https://app.test/billing")
    assert portal.id.startswith("bps_") and portal.url.startswith("https://billing.stripe.com/")
    (sent,) = stand_in.calls("POST", "/v1/billing_portal/sessions")
    assert sent.params == {"customer": customer, "return_url": "https://app.test/billing", "configuration": "bpc_123"}
    assert sent.headers["idempotency-key"].startswith("vendo-portal-")
    with pytest.raises(NotFound):
        await provider.create_portal("cus_unknown", "https://app.test/billing")


# -- subscription changes ----------------------------------------------------------------------


async def _subscribed(stand_in: StripeStandIn, provider: Any, key: str, seats: int = 1) -> tuple[dict[str, str], Any]:
    ids = await synced(stand_in, provider)
    customer = stand_in.add_customer("ws-1")
    subscription = stand_in.add_subscription(customer["id"], ids[key], seats,
                                             metadata={"vendo_subject": "ws-1", "vendo_plan": key.split(":")[1]})
    return ids, subscription


async def test_upgrade_applies_now_with_proration(stand_in: StripeStandIn, make_provider: Any) -> None:
    """Peer: stand-in (price-based subscriptions; localstripe knows only legacy Plans)."""
    provider = make_provider(stand_in.url)
    ids, subscription = await _subscribed(stand_in, provider, "vendo:pro:v1:month:usd")
    info = await provider.change_subscription(SubscriptionChange(subscription["id"], plan="team", seats=4,
                                                                 idempotency_key="chg-1"))
    assert (info.plan, info.seats, info.status, info.subject) == ("team", 4, "active", "ws-1")
    (sent,) = stand_in.calls("POST", f"/v1/subscriptions/{subscription['id']}")
    item = subscription["items"]["data"][0]
    assert sent.params == {"items": [{"id": item["id"], "price": ids["vendo:team:v2:month:usd"], "quantity": "4"}],
                           "proration_behavior": "create_prorations", "metadata": {"vendo_plan": "team"}}
    assert sent.headers["idempotency-key"] == "chg-1"


async def test_seat_changes_keep_the_minimum_and_the_price(stand_in: StripeStandIn, make_provider: Any) -> None:
    """Peer: stand-in."""
    provider = make_provider(stand_in.url, proration_behavior="always_invoice")
    ids, subscription = await _subscribed(stand_in, provider, "vendo:team:v2:month:usd", seats=5)
    assert (await provider.change_subscription(SubscriptionChange(subscription["id"], seats=8))).seats == 8
    assert (await provider.change_subscription(SubscriptionChange(subscription["id"], seats=1))).seats == 3
    first, second = stand_in.calls("POST", f"/v1/subscriptions/{subscription['id']}")
    assert first.params["items"][0]["price"] == ids["vendo:team:v2:month:usd"]
    assert first.params["proration_behavior"] == "always_invoice"
    assert first.headers["idempotency-key"] != second.headers["idempotency-key"]


async def test_downgrade_waits_for_the_period_end_through_a_schedule(stand_in: StripeStandIn,
                                                                   make_provider: Any) -> None:
    """Peer: stand-in (Subscription Schedules)."""
    provider = make_provider(stand_in.url)
    ids, subscription = await _subscribed(stand_in, provider, "vendo:team:v2:month:usd", seats=6)
    item = subscription["items"]["data"][0]
    info = await provider.change_subscription(SubscriptionChange(subscription["id"], plan="pro", at_period_end=True,
                                                                 idempotency_key="down-1"))
    assert (info.plan, info.seats) == ("team", 6)  # nothing changes before the renewal
    assert stand_in.calls("POST", f"/v1/subscriptions/{subscription['id']}") == []
    (created,) = stand_in.calls("POST", "/v1/subscription_schedules")
    assert created.params == {"from_subscription": subscription["id"]}
    schedule = stand_in.objects[subscription["schedule"]]
    (updated,) = stand_in.calls("POST", f"/v1/subscription_schedules/{schedule['id']}")
    assert updated.params == {
        "end_behavior": "release",
        "proration_behavior": "none",
        "phases": [
            {"items": [{"price": ids["vendo:team:v2:month:usd"], "quantity": "6"}],
             "start_date": str(item["current_period_start"]), "end_date": str(item["current_period_end"])},
            {"items": [{"price": ids["vendo:pro:v1:month:usd"], "quantity": "1"}],
             "metadata": {"vendo_subject": "ws-1", "vendo_plan": "pro"}},
        ],
    }

    # changing one's mind: a second scheduled change rewrites the same schedule
    await provider.change_subscription(SubscriptionChange(subscription["id"], plan="pro", seats=1, at_period_end=True,
                                                          price_key="vendo:pro:v1:year:usd"))
    assert len(stand_in.calls("POST", "/v1/subscription_schedules")) == 1
    assert stand_in.objects[schedule["id"]]["phases"][1]["items"][0]["price"] == ids["vendo:pro:v1:year:usd"]

    # an immediate change releases the schedule first (Stripe refuses item changes otherwise)
    info = await provider.change_subscription(SubscriptionChange(subscription["id"], seats=9))
    assert info.seats == 9 and stand_in.objects[schedule["id"]]["status"] == "released"


async def test_cancel_at_period_end_releases_a_pending_change(stand_in: StripeStandIn, make_provider: Any) -> None:
    """Peer: stand-in."""
    provider = make_provider(stand_in.url)
    _ids, subscription = await _subscribed(stand_in, provider, "vendo:team:v2:month:usd", seats=3)
    await provider.change_subscription(SubscriptionChange(subscription["id"], plan="pro", at_period_end=True))
    await provider.cancel_subscription(subscription["id"], at_period_end=True)
    assert subscription["cancel_at_period_end"] is True and subscription["schedule"] is None
    assert (await provider.resume_subscription(subscription["id"])).cancel_at_period_end is False
    await provider.cancel_subscription(subscription["id"], at_period_end=False)
    with pytest.raises(Conflict):
        await provider.change_subscription(SubscriptionChange(subscription["id"], seats=4))


async def test_cancel_now_survives_a_lost_answer(stand_in: StripeStandIn, make_provider: Any) -> None:
    """Peer: stand-in. Stripe takes no idempotency key on DELETE: when the answer of a
    cancellation that went through is lost, the SDK's retry is told 404 "No such subscription"
    (Stripe's answer for a canceled one); the provider reads it back and finds it canceled."""
    provider = make_provider(stand_in.url, max_network_retries=1)
    _ids, subscription = await _subscribed(stand_in, provider, "vendo:pro:v1:month:usd")
    path = f"/v1/subscriptions/{subscription['id']}"
    stand_in.lose_answer = lambda r: r.method == "DELETE" and len(stand_in.calls("DELETE", path)) == 1
    await provider.cancel_subscription(subscription["id"], at_period_end=False)
    assert len(stand_in.calls("DELETE", path)) == 2 and subscription["status"] == "canceled"
    stand_in.lose_answer = None
    # a 404 for a subscription that is not canceled stays an error
    other = stand_in.add_subscription(subscription["customer"], subscription["items"]["data"][0]["price"]["id"])
    stand_in.fault = lambda r: (404, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                                                "message": "No such subscription"}}) if r.method == "DELETE" else None
    with pytest.raises(NotFound):
        await provider.cancel_subscription(other["id"], at_period_end=False)
    assert other["status"] == "active"


async def test_resume_undoes_a_cancellation_on_a_chosen_date(stand_in: StripeStandIn, make_provider: Any) -> None:
    """Peer: stand-in. A cancellation set for a date (``cancel_at``, e.g. from the Dashboard) is
    not undone by ``cancel_at_period_end=false``: resume unsets ``cancel_at`` instead."""
    provider = make_provider(stand_in.url)
    _ids, subscription = await _subscribed(stand_in, provider, "vendo:pro:v1:month:usd")
    subscription["cancel_at"] = subscription["items"]["data"][0]["current_period_end"] - 86400
    await provider.resume_subscription(subscription["id"])
    (sent,) = stand_in.calls("POST", f"/v1/subscriptions/{subscription['id']}")
    assert sent.params == {"cancel_at": ""} and subscription["cancel_at"] is None
    assert subscription["status"] == "active" and subscription["cancel_at_period_end"] is False


def test_one_provider_serves_successive_event_loops(stand_in: StripeStandIn, make_provider: Any) -> None:
    """Peer: stand-in. A CLI runs one ``asyncio.run`` per command on the same provider."""
    import asyncio

    provider = make_provider(stand_in.url)
    first = asyncio.run(provider.create_customer("ws-1"))
    assert asyncio.run(provider.create_customer("ws-1")) == first
    assert asyncio.run(provider.create_customer("ws-2")) != first


# -- usage -----------------------------------------------------------------------------------


async def test_usage_is_reported_as_meter_events_once_per_key(stand_in: StripeStandIn, make_provider: Any) -> None:
    """Peer: stand-in (Billing meter events; it rejects a second event with the same identifier)."""
    provider = make_provider(stand_in.url)
    _ids, subscription = await _subscribed(stand_in, provider, "vendo:api:v1:month:usd")
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)  # Stripe's window: the past 35 days
    report = UsageReport(subscription["id"], "api.calls", 42, moment, "usage-ws-1-0001")
    await provider.report_usage(report)
    await provider.report_usage(report)  # a retry: the same Idempotency-Key replays the answer
    (event,) = stand_in.meter_events.values()
    assert event == {"object": "billing.meter_event", "event_name": "vendo_api_calls", "identifier": "usage-ws-1-0001",
                     "payload": {"stripe_customer_id": subscription["customer"], "value": "42"},
                     "timestamp": int(moment.timestamp()), "created": event["created"], "livemode": False}
    sent = stand_in.calls("POST", "/v1/billing/meter_events")
    assert [r.headers["idempotency-key"] for r in sent] == ["vendo-usage-usage-ws-1-0001"] * 2

    await provider.report_usage(UsageReport(subscription["id"], "api.calls", 3, moment, "usage-ws-1-0002",
                                            customer_id=subscription["customer"]))
    assert len(stand_in.meter_events) == 2
    assert len(stand_in.calls("GET", f"/v1/subscriptions/{subscription['id']}")) == 2  # only without customer_id
    await provider.report_usage(UsageReport(subscription["id"], "api.calls", 0, moment, "usage-ws-1-0003"))
    assert len(stand_in.meter_events) == 2
    with pytest.raises(InvalidInput):
        await provider.report_usage(UsageReport(subscription["id"], "api.calls", -1, moment, "usage-ws-1-0004"))


@pytest.mark.parametrize("age", [timedelta(days=36), -timedelta(minutes=6)], ids=["too-old", "future"])
async def test_usage_outside_stripes_window_is_refused(stand_in: StripeStandIn, make_provider: Any,
                                                        age: timedelta) -> None:
    """Peer: stand-in (meter events are accepted from 35 days back to 5 minutes ahead; a refused
    report can be retried with its key once corrected, as Stripe saves no result for it)."""
    provider = make_provider(stand_in.url)
    _ids, subscription = await _subscribed(stand_in, provider, "vendo:api:v1:month:usd")
    customer = subscription["customer"]
    with pytest.raises(InvalidInput) as refused:
        await provider.report_usage(UsageReport(subscription["id"], "api.calls", 4, datetime.now(UTC) - age,
                                                "usage-ws-1-late", customer_id=customer))
    assert refused.value.code == "stripe_invalid_request" and refused.value.details["param"] == "timestamp"
    assert not stand_in.meter_events
    await provider.report_usage(UsageReport(subscription["id"], "api.calls", 4, datetime.now(UTC), "usage-ws-1-late",
                                            customer_id=customer))
    assert [e["payload"]["value"] for e in stand_in.meter_events.values()] == ["4"]


# -- errors ----------------------------------------------------------------------------------


async def test_vendor_failures_become_vendo_errors(stand_in: StripeStandIn, make_provider: Any) -> None:
    """Peers: the stand-in answering 500, 429 and 400, a closed loopback port, a wrong key."""
    provider = make_provider(stand_in.url)
    stand_in.fault = lambda r: (500, {"error": {"type": "api_error", "message": "boom"}})
    with pytest.raises(ProviderUnavailable) as caught:
        await provider.create_customer("ws-1")
    assert caught.value.status_code == 502 and caught.value.code == "provider_unavailable"
    assert caught.value.to_dict()["error"]["details"]["reason"] == "vendor_error"

    stand_in.fault = lambda r: (429, {"error": {"type": "invalid_request_error", "code": "rate_limit",
                                                "message": "slow down"}})
    with pytest.raises(ProviderUnavailable) as caught:
        await provider.create_customer("ws-1")
    assert caught.value.details["reason"] == "rate_limited"

    stand_in.fault = lambda r: (400, {"error": {"type": "invalid_request_error", "code": "parameter_invalid_empty",
                                                "param": "return_url", "message": "bad"}})
    with pytest.raises(InvalidInput) as caught:
        await provider.create_portal("cus_x", "")
    assert caught.value.details["stripe_code"] == "parameter_invalid_empty"
    assert caught.value.details["param"] == "return_url"
    stand_in.fault = None

    with pytest.raises(ProviderNotConfigured) as caught:
        await make_provider(stand_in.url, api_key="sk_test_wrong").create_customer("ws-1")
    assert caught.value.code == "provider_misconfigured"

    with pytest.raises(ProviderNotConfigured):
        await make_provider(stand_in.url, api_key=None).create_customer("ws-1")

    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.raises(ProviderUnavailable) as caught:
        await make_provider(f"http://127.0.0.1:{closed}").get_subscription("sub_1")
    assert caught.value.details["reason"] == "unreachable"
