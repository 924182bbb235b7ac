"""Refunds of the local provider: recorded locally, told to the kernel through a signed
``refund.created`` webhook (``billing.refund.created`` in the outbox), idempotent, and the
``vendo billing-local refund`` command run as an operator runs it (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import pytest

from vendo import Conflict, InvalidInput, NotFound


def paid(world: Any, plan: str = "pro") -> dict[str, Any]:
    """Buy ``plan`` for the team through the checkout page; the ids involved."""
    checkout = world.checkout(plan)
    world.pay(checkout)
    sub = world.state()["subscription"]["id"]
    [invoice] = [i for i in world.provider._invoices(world.provider.checkout(checkout["url"].rsplit("/", 1)[1])
                                                     .customer_id) if i.subscription_id == sub]
    return {"checkout": checkout["url"].rsplit("/", 1)[1], "subscription": sub, "invoice": invoice.id,
            "amount": invoice.amount_paid, "currency": invoice.currency}


def refunded_in_kernel(world: Any, invoice_id: str) -> int:
    from vendo.billing.models import BillingInvoice

    with world.kernel.session() as session:
        return session.get(BillingInvoice, ("local", invoice_id)).amount_refunded


def refund(world: Any, *args: Any, **kwargs: Any) -> Any:
    return asyncio.run(world.provider.refund(*args, **kwargs))


def test_a_partial_then_a_full_refund_reach_the_kernel_once_each(world, clock) -> None:
    bought = paid(world)
    assert bought["amount"] == 990
    first, created = refund(world, bought["checkout"], 300, reason="goodwill")
    assert created and first.amount == 300 and first.invoice_id == bought["invoice"]
    [event] = world.outbox("billing.refund.created")
    assert event == {"provider": "local", "subject": world.team, "subscription_id": bought["subscription"],
                     "checkout_id": bought["checkout"], "invoice_id": bought["invoice"], "amount": 300,
                     "currency": bought["currency"], "amount_paid": 990, "amount_refunded_total": 300,
                     "fully_refunded": False, "payment": None}
    assert refunded_in_kernel(world, bought["invoice"]) == 300

    again, created = refund(world, bought["checkout"], 300)  # a retry: the same refund, delivered again
    assert not created and again.id == first.id
    assert len(world.outbox("billing.refund.created")) == 1 and refunded_in_kernel(world, bought["invoice"]) == 300

    clock.advance(minutes=5)
    rest, created = refund(world, bought["subscription"])  # what is left, found from the subscription
    assert created and rest.amount == 690 and rest.invoice_id == bought["invoice"]
    assert [e["amount"] for e in world.outbox("billing.refund.created")] == [300, 690]
    assert refunded_in_kernel(world, bought["invoice"]) == 990

    for target in (bought["invoice"], bought["subscription"], bought["checkout"]):
        same, created = refund(world, target)  # refunded in full: nothing more
        assert not created and same.id == rest.id
    assert len(world.outbox("billing.refund.created")) == 2 and refunded_in_kernel(world, bought["invoice"]) == 990
    assert [r.amount for r in world.provider.refunds(bought["invoice"])] == [300, 690]
    assert world.plan() == "pro", "a refund does not cancel the subscription"


def test_refunds_never_exceed_what_was_paid(world) -> None:
    bought = paid(world)
    with pytest.raises(Conflict) as too_much:
        refund(world, bought["invoice"], 991)
    assert too_much.value.code == "refund_exceeds_paid" and too_much.value.details["left"] == 990
    refund(world, bought["invoice"], 500, idempotency_key="ticket-1")
    with pytest.raises(Conflict) as over:
        refund(world, bought["invoice"], 500)
    assert over.value.code == "refund_exceeds_paid" and over.value.details["left"] == 490
    with pytest.raises(Conflict) as reused:
        refund(world, bought["invoice"], 200, idempotency_key="ticket-1")
    assert reused.value.code == "idempotency_key_reused"
    same, created = refund(world, bought["invoice"], 500, idempotency_key="ticket-1")
    assert not created and same.amount == 500
    with pytest.raises(InvalidInput) as zero:
        refund(world, bought["invoice"], 0)
    assert zero.value.code == "invalid_amount"
    with pytest.raises(NotFound) as unknown:
        refund(world, "linv_nope")
    assert unknown.value.code == "unknown_invoice"
    assert [e["amount"] for e in world.outbox("billing.refund.created")] == [500]


def test_a_trial_checkout_has_nothing_to_refund(world) -> None:
    checkout = world.checkout("pro", trial=True)
    world.pay(checkout)
    for target in (checkout["url"].rsplit("/", 1)[1], world.state()["subscription"]["id"]):
        with pytest.raises(Conflict) as nothing:
            refund(world, target)
        assert nothing.value.code == "not_refundable"
    assert world.outbox("billing.refund.created") == []


def test_the_subscription_refund_picks_its_latest_invoice_with_money_left(world, clock) -> None:
    bought = paid(world)
    clock.advance(days=32)
    asyncio.run(world.provider.renew())
    latest, created = refund(world, bought["subscription"])
    assert created and latest.invoice_id != bought["invoice"] and latest.amount == 990
    older, created = refund(world, bought["subscription"])
    assert created and older.invoice_id == bought["invoice"]
    again, created = refund(world, bought["subscription"])
    assert not created and again.id == latest.id


def vendo(world: Any, database_url: str, *args: str) -> subprocess.CompletedProcess:
    from vendo_billing_local import PLUGIN_NAME

    env = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_") or k.startswith("VENDO_TEST_")}
    env.update({"VENDO_DATABASE_URL": database_url, "VENDO_SECRET_KEY": world.kernel.settings.secret_key
                .get_secret_value() if hasattr(world.kernel.settings.secret_key, "get_secret_value")
                else str(world.kernel.settings.secret_key),
                "VENDO_DATA_DIR": str(world.kernel.settings.data_dir), "VENDO_PLUGINS__ENABLED": PLUGIN_NAME})
    return subprocess.run([sys.executable, "-m", "vendo", "billing-local", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_the_refund_command(world, database_url) -> None:
    bought = paid(world)
    done = vendo(world, database_url, "refund", bought["subscription"], "--amount", "400", "--reason", "late")
    assert done.returncode == 0, done.stderr
    assert " refunded: 4.00 " in done.stdout and bought["invoice"] in done.stdout and world.team in done.stdout
    again = vendo(world, database_url, "refund", bought["subscription"], "--amount", "400")
    assert again.returncode == 0 and " already refunded: 4.00 " in again.stdout, again.stderr
    assert [e["amount"] for e in world.outbox("billing.refund.created")] == [400]
    too_much = vendo(world, database_url, "refund", bought["invoice"], "--amount", "600")
    assert too_much.returncode == 1 and "Traceback" not in too_much.stderr
    assert [line for line in too_much.stderr.splitlines() if line.startswith("error: ")] == [
        f"error: invoice {bought['invoice']} has 590 {bought['currency']} left to refund"]
    unknown = vendo(world, database_url, "refund", "linv_nope")
    assert unknown.returncode == 1 and "error: no local invoice, subscription or checkout 'linv_nope'" in unknown.stderr
    assert refunded_in_kernel(world, bought["invoice"]) == 400
