"""The local provider end to end over real HTTP (TestClient on the kernel's app), SQLite and
PostgreSQL: checkout page → Pay → signed webhook → subscription and entitlements; trials;
portal; plan changes with proration; renewals; manual assignment; owner-only; bad input."""

from __future__ import annotations

from datetime import timedelta

import pytest


def test_checkout_page_pay_subscribes_and_entitles_at_once(world):
    assert world.plan() == "basic"
    checkout = world.checkout("pro", currency="eur")
    assert checkout["provider"] == "local" and checkout["url"].startswith("http://127.0.0.1:8000/api/v1/billing/local/checkout/lchk_")
    page = world.client.get(checkout["url"])
    assert "Subscribe to Pro" in page.text and "9.90 EUR" in page.text and ">Pay<" in page.text
    response = world.pay(checkout)
    assert response.headers["location"] == "/done"
    state = world.state()
    assert state["subscription"]["plan"] == "pro" and state["subscription"]["status"] == "active"
    assert state["entitled_plan"] == "pro" == world.plan()
    completed = world.outbox("billing.checkout.completed")
    assert len(completed) == 1 and completed[0]["email"] == "owner@example.com"
    assert completed[0]["subject"] == world.team and completed[0]["amount"] == 990
    changed = world.outbox("billing.subscription.changed")
    assert changed[-1]["status"] == "active" and changed[-1]["previous_status"] is None
    assert len(world.outbox("billing.invoice.paid")) == 1
    invoices = world.get("invoices").json()["data"]
    assert [(i["amount_paid"], i["currency"], i["status"]) for i in invoices] == [(990, "eur", "paid")]
    # pressing Pay again (a double click, a refresh) changes nothing
    world.client.post(checkout["url"], follow_redirects=False)
    assert len(world.outbox("billing.invoice.paid")) == 1
    events = world.kernel.billing.events()
    assert {e["type"] for e in events} == {"checkout.completed", "invoice.paid"}
    assert all(e["status"] == "processed" for e in events)


def test_checkout_is_idempotent_by_key_and_refuses_a_reused_key(world):
    first = world.post("checkout", {"plan": "pro", "success_url": "/s", "cancel_url": "/c"},
                       **{"Idempotency-Key": "k1"})
    again = world.post("checkout", {"plan": "pro", "success_url": "/s", "cancel_url": "/c"},
                       **{"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 201
    assert first.json()["checkout_id"] == again.json()["checkout_id"] and again.json()["replayed"]
    other = world.post("checkout", {"plan": "business", "success_url": "/s", "cancel_url": "/c"},
                       **{"Idempotency-Key": "k1"})
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"


def test_bad_input_codes(world):
    def code(body):
        response = world.post("checkout", {"success_url": "/s", "cancel_url": "/c", **body})
        return response.status_code, response.json()["error"]["code"]

    assert code({"plan": "platinum"}) == (404, "unknown_plan")
    assert code({"plan": "basic"}) == (404, "unknown_plan")  # the free plan has no price
    assert code({"plan": "enterprise", "interval": "month", "currency": "usd", "seats": 5}) == \
        (422, "currency_not_offered")
    assert code({"plan": "enterprise", "seats": 2}) == (422, "too_few_seats")
    assert code({"plan": "business", "trial": True}) == (422, "no_trial")
    world.pay(world.checkout("pro"))
    assert code({"plan": "pro"}) == (409, "already_subscribed")
    assert code({"plan": "business"}) == (409, "subscription_exists")
    bad = world.post("change-plan", {"plan": "nope"})
    assert bad.status_code == 404 and bad.json()["error"]["code"] == "unknown_plan"


def test_a_second_checkout_opened_alongside_cannot_be_paid_once_one_was(world):
    """Two checkouts opened before either is paid (two tabs): paying the second is refused,
    409, and the subject keeps one subscription."""
    pro, business, pro_again = world.checkout("pro"), world.checkout("business"), world.checkout("pro")
    world.pay(pro)
    for other, code in ((business, "subscription_exists"), (pro_again, "already_subscribed")):
        refused = world.client.post(other["url"], follow_redirects=False)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == code
        assert "Pay" in world.client.get(other["url"]).text  # still open: nothing was taken
    state = world.state()
    assert state["subscription"]["plan"] == "pro" and world.plan() == "pro"
    with world.kernel.session() as session:
        from sqlalchemy import func, select
        from vendo_billing_local.models import LocalSubscription

        assert session.scalar(select(func.count()).select_from(LocalSubscription)) == 1
    assert len(world.outbox("billing.checkout.completed")) == 1


def test_only_the_owner_changes_billing(world):
    for user in (world.admin, world.member):
        for path, body in (("checkout", {"plan": "pro", "success_url": "/s", "cancel_url": "/c"}),
                           ("portal", {"return_url": "/"}), ("change-plan", {"plan": "business"}),
                           ("cancel", {}), ("resume", {})):
            response = world.post(path, body, user=user)
            assert response.status_code == 403, (path, response.text)
            assert response.json()["error"]["code"] == "insufficient_role"
    assert world.get("subscription", user=world.member).status_code == 200
    assert world.get("invoices", user=world.member).status_code == 403
    assert world.get("invoices", user=world.admin).status_code == 200
    anonymous = world.client.get("/api/v1/billing/subscription", headers={"X-Vendo-Workspace": world.team})
    assert anonymous.status_code == 401


def test_trial_without_card_falls_back_to_free_unless_converted(world, clock):
    checkout = world.checkout("pro", trial=True)
    page = world.client.get(checkout["url"])
    assert "14-day free trial, no card needed" in page.text and ">Start trial<" in page.text
    world.pay(checkout)
    state = world.state()
    assert state["subscription"]["status"] == "trialing" and world.plan() == "pro"
    assert state["subscription"]["trial_end"] == (clock() + timedelta(days=14)).isoformat()
    assert world.outbox("billing.invoice.paid") == []
    clock.advance(days=14, seconds=1)
    assert world.plan() == "basic"  # the trial ended without conversion: the free plan
    assert asyncio_run(world.provider.renew()) == 1
    assert world.state()["subscription"]["status"] == "expired" and world.plan() == "basic"
    again = world.post("checkout", {"plan": "pro", "trial": True, "success_url": "/s", "cancel_url": "/c"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "trial_used"
    world.pay(world.checkout("pro"))  # subscribing without a trial is still possible
    assert world.plan() == "pro"


def test_trial_converted_by_paying_keeps_the_plan(world, clock):
    world.pay(world.checkout("pro", trial=True))
    clock.advance(days=3)
    world.pay(world.checkout("pro"))  # conversion: the trial's subscription becomes active
    state = world.state()
    assert state["subscription"]["status"] == "active" and world.plan() == "pro"
    clock.advance(days=20)
    assert world.plan() == "pro"
    subs = world.kernel.billing.subscription(world.team)["subscription"]
    assert subs["status"] == "active"


def test_upgrade_now_with_proration_downgrade_at_period_end(world, clock):
    world.pay(world.checkout("pro", currency="eur"))
    clock.advance(days=15)
    up = world.post("change-plan", {"plan": "business"})
    assert up.status_code == 200, up.text
    assert up.json()["applies"] == "now" and world.plan() == "business"
    invoices = world.get("invoices").json()["data"]
    proration = invoices[0]
    assert proration["amount_paid"] > 0 and proration["amount_paid"] < 2990 - 990
    down = world.post("change-plan", {"plan": "pro"})
    assert down.status_code == 200, down.text
    assert down.json()["applies"] == "period_end"
    state = world.state()
    assert state["subscription"]["plan"] == "business" and state["subscription"]["scheduled_plan"] == "pro"
    assert world.plan() == "business"
    scheduled = world.outbox("billing.subscription.changed")[-1]  # the scheduled downgrade is a change too
    assert (scheduled["plan"], scheduled["previous_plan"], scheduled["scheduled_plan"]) == ("business", "business",
                                                                                           "pro")
    audit = world.kernel.audit.query(world.team, action="billing.subscription.changed")
    assert audit[0]["details"]["scheduled_plan"] == "pro"
    clock.advance(days=20)
    assert asyncio_run(world.provider.renew()) == 1
    state = world.state()
    assert state["subscription"]["plan"] == "pro" and state["subscription"]["scheduled_plan"] is None
    assert world.plan() == "pro"


def test_an_upgrade_replaces_a_downgrade_waiting_for_the_renewal(world, clock):
    world.pay(world.checkout("business", currency="eur"))
    assert world.post("change-plan", {"plan": "pro"}).json()["applies"] == "period_end"
    assert world.state()["subscription"]["scheduled_plan"] == "pro"
    up = world.post("change-plan", {"plan": "enterprise", "seats": 5})
    assert up.status_code == 200 and up.json()["applies"] == "now"
    state = world.state()["subscription"]
    assert (state["plan"], state["seats"], state["scheduled_plan"]) == ("enterprise", 5, None)
    clock.advance(days=32)
    asyncio_run(world.provider.renew())
    assert world.state()["subscription"]["plan"] == "enterprise" and world.plan() == "enterprise"


def test_seats_and_minimum_seats(world):
    world.pay(world.checkout("enterprise", seats=5))
    assert world.state()["subscription"]["seats"] == 5
    too_few = world.post("change-plan", {"seats": 4})
    assert too_few.status_code == 422 and too_few.json()["error"]["code"] == "too_few_seats"
    more = world.post("change-plan", {"seats": 8})
    assert more.status_code == 200 and more.json()["applies"] == "now"
    assert world.state()["subscription"]["seats"] == 8
    with world.kernel.session() as session:
        from vendo.entitlements.models import Assignment

        assert session.get(Assignment, world.team).seats == 8


def test_cancel_at_period_end_resume_and_cancel_now(world, clock):
    world.pay(world.checkout("pro"))
    response = world.post("cancel", {"at_period_end": True})
    assert response.status_code == 200 and response.json()["subscription"]["cancel_at_period_end"] is True
    assert world.plan() == "pro"
    resumed = world.post("resume")
    assert resumed.status_code == 200 and resumed.json()["subscription"]["cancel_at_period_end"] is False
    again = world.post("resume")
    assert again.status_code == 422 and again.json()["error"]["code"] == "not_canceling"
    world.post("cancel", {"at_period_end": True})
    clock.advance(days=32)
    asyncio_run(world.provider.renew())
    assert world.state()["subscription"]["status"] == "canceled" and world.plan() == "basic"
    world.pay(world.checkout("business"))
    now = world.post("cancel", {"at_period_end": False})
    assert now.json()["subscription"]["status"] == "canceled" and world.plan() == "basic"


def test_portal_page_cancels_and_resumes(world):
    world.pay(world.checkout("pro"))
    portal = world.post("portal", {"return_url": "/account"})
    assert portal.status_code == 200, portal.text
    page = world.client.get(portal.json()["url"])
    assert page.status_code == 200 and "Cancel at period end" in page.text and "9.90" in page.text
    sub_id = world.state()["subscription"]["id"]
    base = portal.json()["url"]
    assert world.client.post(f"{base}/{sub_id}/cancel", follow_redirects=False).status_code == 303
    assert world.state()["subscription"]["cancel_at_period_end"] is True
    assert "Resume" in world.client.get(base).text
    world.client.post(f"{base}/{sub_id}/resume", follow_redirects=False)
    assert world.state()["subscription"]["cancel_at_period_end"] is False
    assert world.client.get("/api/v1/billing/local/portal/lprt_nope").status_code == 404


def test_manual_assignment_goes_through_the_state_machine(world):
    state = asyncio_run(world.kernel.billing.assign(world.team, "enterprise", seats=6))
    assert state["subscription"]["plan"] == "enterprise" and state["subscription"]["seats"] == 6
    assert world.plan() == "enterprise"
    assert world.outbox("billing.subscription.changed")[-1]["plan"] == "enterprise"
    with pytest.raises(Exception) as refused:
        asyncio_run(world.kernel.billing.assign(world.team, "enterprise", seats=2))
    assert getattr(refused.value, "code", "") == "too_few_seats"
    asyncio_run(world.kernel.billing.assign(world.team, "pro", trial=True))
    assert world.state()["subscription"]["status"] == "trialing"
    for interval in ("week", "monthly"):  # also on the free plan, which has no price to refuse it
        for plan in ("business", "basic"):
            with pytest.raises(Exception) as refused:
                asyncio_run(world.kernel.billing.assign(world.team, plan, interval=interval))
            assert getattr(refused.value, "code", "") == "invalid_interval"
    assert world.state()["subscription"]["plan"] == "pro"


def test_sync_catalog_stores_stable_price_ids(world):
    first = asyncio_run(world.kernel.billing.sync_catalog())
    assert "vendo:pro:v1:month:eur" in first and "vendo:enterprise:v1:year:eur" in first
    assert asyncio_run(world.kernel.billing.sync_catalog()) == first
    prices = {p.lookup_key: p for p in world.kernel.billing.catalog_prices()}
    enterprise = prices["vendo:enterprise:v1:month:eur"]
    assert (enterprise.unit_amount, enterprise.per_seat_amount, enterprise.min_seats) == (4990, 390, 5)


def asyncio_run(coroutine):
    import asyncio

    return asyncio.run(coroutine)



def test_the_server_renews_in_the_background(make_world, clock):
    import time

    world = make_world(local={"renew_interval": 0.05})
    assert world.provider.renewer is not None and not world.provider.renewer.done()
    world.pay(world.checkout("pro"))
    world.post("cancel", {"at_period_end": True})
    clock.advance(days=40)
    deadline = time.monotonic() + 10
    while world.state()["subscription"]["status"] != "canceled" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert world.state()["subscription"]["status"] == "canceled" and world.plan() == "basic"


def test_no_background_renewal_when_disabled(make_world):
    world = make_world(local={"renew_interval": 0})
    assert world.provider.renewer is None


def test_the_success_url_gets_the_checkout_id_as_stripe_fills_it(world):
    checkout = world.checkout("pro", success_url="https://app.test/done?session={CHECKOUT_SESSION_ID}&x=1")
    response = world.pay(checkout)
    assert response.headers["location"] == f"https://app.test/done?session={checkout['checkout_id']}&x=1"
    page = world.client.get(checkout["url"])  # completed: the page links to the same place
    assert f"https://app.test/done?session={checkout['checkout_id']}&amp;x=1" in page.text
