"""The session-level hold API the AI service meters with (``Entitlements.plan_state``,
``hold_many``, ``commit_holds``, ``release_holds``): several callers' writes in one shared
transaction, each all or none. On SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from vendo.entitlements.catalog import load_catalog
from vendo.entitlements.models import Hold, LedgerEntry
from vendo.errors import Conflict, NotFound

CATALOGS = Path(__file__).resolve().parents[2] / "examples" / "catalogs"


@pytest.fixture
def team(migrated_kernel, vendo_clock):
    kernel = migrated_kernel(clock=vendo_clock)
    kernel.providers.configure({})
    kernel.entitlements.load_catalog(load_catalog(CATALOGS / "memento.toml"))
    with kernel.session() as session:
        owner = kernel.identity.create_user(session, "owner@example.com").id
        workspace = kernel.identity.create_workspace(session, owner, "Team").id
        kernel.entitlements.assign(session, workspace, "pro")  # chat = 100, reformulate = 50 a month
    return kernel, workspace, owner


def test_holds_of_several_callers_in_one_transaction_are_each_all_or_none(team) -> None:
    kernel, workspace, owner = team
    entitlements = kernel.entitlements
    with kernel.session() as session:
        planned = entitlements.plan_state(workspace, session)
        assert planned[1].id == "pro"
        first = entitlements.hold_many(session, workspace, [("chat", 30), ("reformulate", 10)], member=owner,
                                       planned=planned)
        refused = entitlements.hold_many(session, workspace, [("reformulate", 5), ("chat", 71)], member=owner)
        second = entitlements.hold_many(session, workspace, [("chat", 70)], member=owner)
    assert [d.allowed for d in first] == [True, True] and all(d.hold_id for d in first)
    assert len(refused) == 1 and not refused[0].allowed and refused[0].feature == "chat"
    assert second[0].allowed and second[0].used == 100  # the refused call gave back its reformulate hold
    assert entitlements.check(workspace, "reformulate").used == 10
    assert entitlements.check(workspace, "chat").used == 100
    with kernel.session() as session:
        assert session.query(Hold).filter_by(status="held").count() == 3
    assert entitlements.plan_state(workspace)[1].id == "pro"  # from the plan cache, no session

    with kernel.session() as session:
        results = entitlements.commit_holds(session, [(first[0].hold_id, 12, 900, 0.02, {"model": "m"}),
                                                      (first[1].hold_id, 10, 0, 0.0, None)],
                                            usage={first[0].hold_id})
        released = entitlements.release_holds(session, [second[0].hold_id], usage=False)
    assert results[0]["used"] == 82 and results[0]["released"] == 18
    assert results[1]["used"] is None and results[1]["committed"] == 10  # no counter moved, none asked
    assert released[0]["released"] == 70 and released[0]["used"] == 12
    assert entitlements.check(workspace, "chat").used == 12
    with kernel.session() as session:
        entries = session.query(LedgerEntry).filter_by(kind="commit").order_by(LedgerEntry.id).all()
        assert [(e.feature, e.amount, e.tokens, e.idempotency_key) for e in entries] == [
            ("chat", 12, 900, f"hold:{first[0].hold_id}"), ("reformulate", 10, 0, f"hold:{first[1].hold_id}")]
        assert {h.status for h in session.query(Hold)} == {"committed", "released"}


def test_settling_a_settled_or_unknown_hold_changes_nothing(team) -> None:
    kernel, workspace, owner = team
    entitlements = kernel.entitlements
    [decision] = entitlements.reserve_many(workspace, [("chat", 5)], member=owner)
    entitlements.commit(decision.hold_id, 3)
    [other] = entitlements.reserve_many(workspace, [("chat", 4)], member=owner)
    with pytest.raises(Conflict) as settled:
        entitlements.commit_many([(other.hold_id, 1, 0, 0.0, None), (decision.hold_id, 1, 0, 0.0, None)])
    assert settled.value.code == "hold_settled"
    with pytest.raises(NotFound) as unknown:
        entitlements.release("hold_unknown")
    assert unknown.value.code == "unknown_hold"
    with pytest.raises(Conflict):
        entitlements.commit_many([(other.hold_id, 1, 0, 0.0, None), (other.hold_id, 1, 0, 0.0, None)])
    assert entitlements.check(workspace, "chat").used == 7  # 3 committed + 4 still held
    assert entitlements.release(other.hold_id)["used"] == 3


def test_meters_without_limits_are_not_held_and_are_recorded_afterwards(migrated_kernel, vendo_clock) -> None:
    kernel = migrated_kernel(clock=vendo_clock)
    kernel.providers.configure({})
    kernel.entitlements.load_catalog(load_catalog(CATALOGS / "memento.toml"))
    with kernel.session() as session:
        owner = kernel.identity.create_user(session, "owner@example.com").id
        workspace = kernel.identity.create_workspace(session, owner, "Team").id
        kernel.entitlements.assign(session, workspace, "enterprise")  # chat unlimited, reformulate = 2000
    entitlements = kernel.entitlements
    with kernel.session() as session:
        decisions = entitlements.hold_many(session, workspace, [("chat", 50), ("reformulate", 10)], member=owner,
                                           skip_unlimited=True)
    assert [d.allowed for d in decisions] == [True, True]
    assert decisions[0].hold_id is None and decisions[0].limit is None and decisions[1].hold_id
    assert entitlements.check(workspace, "chat").used == 0  # nothing held for the unlimited meter
    assert entitlements.check(workspace, "reformulate").used == 10

    with kernel.session() as session:
        used = entitlements.record_many(session, workspace, [("chat", 3, 120, 0.5, {"model": "m"}, "call-1:chat")],
                                        member=owner)
        entitlements.commit_holds(session, [(decisions[1].hold_id, 4, 0, 0.0, None)])
    assert used == [None] and entitlements.check(workspace, "chat").used == 3  # the SQL store: one UPSERT, no read-back
    assert entitlements.check(workspace, "reformulate").used == 4
    with kernel.session() as session:
        entry = session.query(LedgerEntry).filter_by(idempotency_key="call-1:chat").one()
        assert (entry.kind, entry.amount, entry.tokens, entry.member, entry.details) == ("consume", 3, 120, owner,
                                                                                          {"model": "m"})
    assert entitlements.drift() == {}  # the counters agree with the ledger
    assert entitlements.refund("call-1:chat")["refunded"] == 3  # a recorded call can be refunded like a consume

    with kernel.session() as session:  # a refusal of a limited meter holds nothing, unlimited ones included
        refused = entitlements.hold_many(session, workspace, [("chat", 1), ("reformulate", 5000)], member=owner,
                                         skip_unlimited=True)
    assert len(refused) == 1 and not refused[0].allowed and refused[0].feature == "reformulate"
    with kernel.session() as session:
        assert session.query(Hold).filter_by(status="held").count() == 0
