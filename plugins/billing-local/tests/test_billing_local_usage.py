"""Usage-based prices end to end with the local provider, over real HTTP, on SQLite and
PostgreSQL: a plan with a flat monthly price and a price per unit of a metered feature; the
checkout page shows both; the usage recorded by the entitlements is reported by
``kernel.billing.report_usage`` (once, whatever the retries) and billed in arrears by the next
period's invoice; a plan without the usage price stops the count."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import select

CATALOG = Path(__file__).resolve().parents[3] / "examples" / "catalogs" / "metered-api.toml"


def _load(world: Any) -> None:
    from vendo.entitlements.catalog import load_catalog

    world.kernel.entitlements.load_catalog(load_catalog(CATALOG), source=str(CATALOG))


def _report(world: Any) -> list[dict[str, Any]]:
    return asyncio.run(world.kernel.billing.report_usage())


def _usage(world: Any, subscription_id: str) -> list[tuple[str, int, str | None]]:
    return [(row.feature, row.quantity, row.price_key) for row in world.provider.usage(subscription_id)]


def _renew_after(world: Any, clock: Any, days: int) -> list[int]:
    """Move the clock ``days`` on, run the renewals, and answer the renewal invoices' amounts
    (minor units, oldest first)."""
    from vendo_billing_local.models import LocalInvoice

    clock.advance(days=days)
    asyncio.run(world.provider.renew())
    with world.kernel.session() as session:
        return [i.amount_paid for i in session.scalars(select(LocalInvoice).where(
            LocalInvoice.reason == "subscription_cycle").order_by(LocalInvoice.created_at))]


def test_usage_is_reported_once_and_billed_in_arrears_by_the_renewal(world, clock):
    _load(world)
    checkout = world.checkout("metered")
    page = world.client.get(checkout["url"])
    assert "29.00 EUR per month" in page.text and "plus 0.002 EUR per api_calls used" in page.text
    world.pay(checkout)
    subscription = world.state()["subscription"]["id"]
    assert world.plan() == "metered"

    assert _report(world) == []  # nothing used yet: nothing reported
    for number in range(3):
        world.kernel.entitlements.consume(world.team, "api_calls", 500, idempotency_key=f"call-{number}")
    clock.advance(seconds=1)
    (result,) = _report(world)
    assert (result["feature"], result["units"], result["status"]) == ("api_calls", 1500, "reported")
    key = "vendo:metered:v2:month:eur:usage:api_calls"
    assert _usage(world, subscription) == [("api_calls", 1500, key)]
    assert _report(world) == []  # reported already: a second run sends nothing
    (status,) = world.kernel.billing.usage.status(world.team)
    assert (status["billed_units"], status["pending_units"], status["last_error"]) == (1500, None, None)
    shown = world.get("usage")  # over HTTP, for the workspace's admins
    assert shown.status_code == 200 and shown.json()["data"] == [status]
    refused = world.get("usage", user=world.member)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_role"
    (event,) = world.outbox("billing.usage.reported")
    assert (event["units"], event["billed_units"], event["price_key"]) == (1500, 1500, key)

    # a refunded call lowers what is billed next; later usage makes up for it first
    world.kernel.entitlements.refund("call-2")
    world.kernel.entitlements.consume(world.team, "api_calls", 800, idempotency_key="call-3")
    clock.advance(seconds=1)
    (result,) = _report(world)
    assert result["units"] == 300  # 1500 - 500 + 800 used, 1500 billed
    assert sum(q for _f, q, _k in _usage(world, subscription)) == 1800

    # the renewal reports what is left (200 calls since the last run), then bills the next month
    # in advance and the ended month's 2000 calls in arrears
    world.kernel.entitlements.consume(world.team, "api_calls", 200, idempotency_key="call-4")
    assert _renew_after(world, clock, 32) == [2900 + 400]  # 2000 × 0.2 cent
    invoices = world.get("invoices").json()["data"]
    assert [i["amount_paid"] for i in invoices] == [3300, 2900]
    # billed units are not billed again by the next renewal
    assert _renew_after(world, clock, 31) == [3300, 2900]


def test_a_failed_report_is_sent_again_under_the_same_key_and_counted_once(world, clock):
    from vendo import UsageReport
    from vendo.billing.models import UsageReportState

    _load(world)
    world.pay(world.checkout("metered"))
    subscription = world.state()["subscription"]["id"]
    world.kernel.entitlements.consume(world.team, "api_calls", 40)
    clock.advance(seconds=1)
    # the provider's store goes away mid-run: the report fails and stays pending
    with world.kernel.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE billing_local_usage RENAME TO billing_local_usage_away")
    try:
        (failed,) = _report(world)
    finally:
        with world.kernel.engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE billing_local_usage_away RENAME TO billing_local_usage")
    assert (failed["status"], failed["units"]) == ("failed", 40) and "report usage" in failed["error"]
    (status,) = world.kernel.billing.usage.status(world.team)
    assert (status["billed_units"], status["pending_units"], status["attempts"]) == (0, 40, 1)
    assert status["last_error"]

    # a report whose answer was lost: the provider has the batch, the kernel does not know it
    with world.kernel.session() as session:
        pending = session.get(UsageReportState, ("local", subscription, "api_calls"))
        key, price_key = pending.pending_key, pending.pending_price_key
    assert key.startswith("vendo-usage-") and len(key) <= 100
    asyncio.run(world.provider.report_usage(UsageReport(subscription, "api_calls", 40, clock(), key,
                                                        price_key=price_key)))
    # more usage meanwhile waits for the next batch: the pending one is sent again as it was
    world.kernel.entitlements.consume(world.team, "api_calls", 2)
    clock.advance(seconds=1)
    (retried,) = _report(world)
    assert (retried["status"], retried["units"]) == ("reported", 40)
    assert _usage(world, subscription) == [("api_calls", 40, price_key)]  # counted once
    (rest,) = _report(world)
    assert (rest["status"], rest["units"]) == ("reported", 2)
    assert sorted(q for _f, q, _k in _usage(world, subscription)) == [2, 40]
    (status,) = world.kernel.billing.usage.status(world.team)
    assert (status["billed_units"], status["pending_units"], status["attempts"], status["last_error"]) == (
        42, None, 0, None)


def test_trial_usage_is_waived_and_a_plan_without_usage_price_stops_the_count(world, clock):
    _load(world)
    world.pay(world.checkout("metered", trial=True))
    assert world.state()["subscription"]["status"] == "trialing"
    subscription = world.state()["subscription"]["id"]
    world.kernel.entitlements.consume(world.team, "api_calls", 1000)
    clock.advance(seconds=1)
    assert _report(world) == []  # a trial bills nothing
    clock.advance(days=3)
    world.pay(world.checkout("metered"))  # converted: paid from now on
    assert world.state()["subscription"]["status"] == "active"
    assert _report(world) == []  # the trial's 1000 calls are waived
    world.kernel.entitlements.consume(world.team, "api_calls", 10)
    clock.advance(seconds=1)
    assert [r["units"] for r in _report(world)] == [10]

    # on the flat plan nothing is billed per call, whatever is used
    change = world.post("change-plan", {"plan": "flat"})
    assert change.status_code == 200 and change.json()["applies"] == "now", change.text
    world.kernel.entitlements.consume(world.team, "api_calls", 70)
    clock.advance(seconds=1)
    assert _report(world) == []
    # back on the metered plan (a downgrade: at the renewal) only the usage from then on counts
    assert world.post("change-plan", {"plan": "metered"}).json()["applies"] == "period_end"
    clock.advance(days=32)
    asyncio.run(world.provider.renew())
    assert world.plan() == "metered"
    world.kernel.entitlements.consume(world.team, "api_calls", 10)  # the same count as before the reset:
    clock.advance(seconds=1)                                         # another batch, another key
    assert [r["units"] for r in _report(world)] == [10]
    assert sum(q for _f, q, _k in _usage(world, subscription)) == 20
    # usage not reported yet is reported before the plan changes
    world.kernel.entitlements.consume(world.team, "api_calls", 7)
    clock.advance(seconds=1)
    assert world.post("change-plan", {"plan": "flat"}).json()["applies"] == "now"
    assert sum(q for _f, q, _k in _usage(world, subscription)) == 27


def test_a_catalog_price_sync_carries_the_exact_unit_price(world):
    _load(world)
    prices = {p.lookup_key: p for p in world.kernel.billing.catalog_prices()}
    usage = prices["vendo:metered:v2:month:eur:usage:api_calls"]
    assert (usage.metered_feature, usage.unit_amount, usage.unit_amount_decimal) == ("api_calls", 0, "0.2")
    flat = prices["vendo:metered:v2:month:eur"]
    assert (flat.metered_feature, flat.unit_amount) == (None, 2900)
    assert asyncio.run(world.kernel.billing.sync_catalog())["vendo:metered:v2:month:eur:usage:api_calls"]


def test_the_server_reports_usage_every_interval(make_world, clock):
    import time

    world = make_world(billing={"usage_report_interval": 0.2})
    _load(world)
    world.pay(world.checkout("metered"))
    subscription = world.state()["subscription"]["id"]
    world.kernel.entitlements.consume(world.team, "api_calls", 33)
    clock.advance(seconds=1)
    deadline = time.monotonic() + 20
    while not world.provider.usage(subscription) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _usage(world, subscription) == [("api_calls", 33, "vendo:metered:v2:month:eur:usage:api_calls")]


def test_included_units_are_free_and_the_overage_is_billed(world, clock):
    _load(world)
    checkout = world.checkout("overage")
    assert "plus 0.01 EUR per api_calls used beyond 1000 included" in world.client.get(checkout["url"]).text
    world.pay(checkout)
    world.kernel.entitlements.consume(world.team, "api_calls", 1200)
    clock.advance(seconds=1)
    assert [r["units"] for r in _report(world)] == [1200]  # every unit is reported; the price includes 1000
    assert _renew_after(world, clock, 32) == [1900 + 200]  # 200 calls beyond the 1000 included, a cent each
    # the next period includes its own 1000 calls again
    world.kernel.entitlements.consume(world.team, "api_calls", 900)
    clock.advance(seconds=1)
    _report(world)
    assert _renew_after(world, clock, 31) == [2100, 1900]


def test_a_seat_change_and_the_renewal_bill_the_price_the_subscriber_bought(world, clock):
    """Without any catalog sync, the local provider prices a grandfathered subscriber's seat
    change and renewals at the catalog version of the subscription's price, not at a price the
    operator raised since (Memento's Enterprise: 49.90 + 3.90 per seat, at least 5)."""
    import tomllib

    from vendo.entitlements.catalog import parse_catalog


    world.pay(world.checkout("enterprise", seats=5))
    memento = Path(__file__).resolve().parents[3] / "examples" / "catalogs" / "memento.toml"
    raised = memento.read_text().replace('amount = "49.90", per_seat = "3.90"', 'amount = "59.90", per_seat = "4.90"')
    world.kernel.entitlements.load_catalog(parse_catalog(tomllib.loads(raised)), source="raised")
    assert world.post("change-plan", {"seats": 6}).json()["applies"] == "now"
    assert _renew_after(world, clock, 32) == [4990 + 6 * 390]


def test_concurrent_reporters_bill_every_unit_once(world, clock):
    """Several workers run the reporter at the same time (each `vendo serve` worker does) while
    usage keeps coming: whatever interleaving, the provider ends with exactly the usage."""
    import threading

    _load(world)
    world.pay(world.checkout("metered"))
    subscription = world.state()["subscription"]["id"]
    errors: list[BaseException] = []

    def reporter() -> None:
        try:
            for _ in range(6):
                asyncio.run(world.kernel.billing.report_usage())
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    for wave in range(3):
        for number in range(5):
            world.kernel.entitlements.consume(world.team, "api_calls", 7, idempotency_key=f"w{wave}-{number}")
        clock.advance(seconds=1)
        threads = [threading.Thread(target=reporter) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    _report(world)  # whatever a lost race left pending
    assert sum(q for _f, q, _k in _usage(world, subscription)) == 3 * 5 * 7
    (status,) = world.kernel.billing.usage.status(world.team)
    assert (status["billed_units"], status["pending_units"]) == (105, None)
