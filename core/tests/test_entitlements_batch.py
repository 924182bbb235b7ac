"""Holds on several features at once (an AI call: request, tokens, spend): all or none, one
transaction; and their commit in one transaction. On SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from vendo.entitlements.catalog import load_catalog
from vendo.entitlements.models import Hold, LedgerEntry

CATALOGS = Path(__file__).resolve().parents[2] / "examples" / "catalogs"


def test_reserve_many_is_all_or_none_and_commit_many_settles_together(migrated_kernel, vendo_clock) -> None:
    kernel = migrated_kernel(clock=vendo_clock)
    kernel.providers.configure({})
    kernel.entitlements.load_catalog(load_catalog(CATALOGS / "memento.toml"))
    with kernel.session() as session:
        owner = kernel.identity.create_user(session, "owner@example.com").id
        team = kernel.identity.create_workspace(session, owner, "Team").id
        kernel.entitlements.assign(session, team, "pro")  # chat = 100, reformulate = 50 a month
    entitlements = kernel.entitlements

    decisions = entitlements.reserve_many(team, [("chat", 60), ("reformulate", 10)], member=owner)
    assert [d.allowed for d in decisions] == [True, True] and all(d.hold_id for d in decisions)
    assert entitlements.check(team, "chat").used == 60 and entitlements.check(team, "reformulate").used == 10

    refused = entitlements.reserve_many(team, [("reformulate", 5), ("chat", 41)], member=owner)
    assert len(refused) == 1 and not refused[0].allowed and refused[0].feature == "chat"
    assert refused[0].reason == "WORKSPACE_QUOTA_EXHAUSTED"
    assert entitlements.check(team, "reformulate").used == 10  # the first hold of the refused batch is gone
    with kernel.session() as session:
        assert session.query(Hold).filter_by(status="held").count() == 2

    results = entitlements.commit_many([(decisions[0].hold_id, 7, 700, 0.01, {"model": "m"}),
                                        (decisions[1].hold_id, 2, 0, 0.0, None)])
    assert [r["used"] for r in results] == [7, 2]
    with kernel.session() as session:
        entries = {e.feature: e for e in session.query(LedgerEntry).filter_by(kind="commit")}
    assert (entries["chat"].amount, entries["chat"].tokens, entries["chat"].details) == (7, 700, {"model": "m"})
    assert entries["reformulate"].amount == 2
