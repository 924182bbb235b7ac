"""The plan cache: a process sees its own plan changes at once, other processes within the
TTL, a rolled-back assignment never reaches it, and counters are never cached.

Two kernels on the same database stand for two worker processes (each has its own engine,
connection pool and cache). Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vendo.entitlements.catalog import load_catalog
from vendo.entitlements.plancache import MISS, PlanCache

CATALOGS = Path(__file__).resolve().parents[2] / "examples" / "catalogs"


class Ticks:
    """A monotonic clock the test moves by hand (the cache's, not the kernel's)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def workers(migrated_kernel, vendo_clock):
    """Two kernels on one database, the first having loaded the Memento catalog, each with a
    plan cache of 30 s on a hand-moved clock; and a workspace on no plan (Basic)."""
    first = migrated_kernel(clock=vendo_clock, entitlements={"plan_cache_ttl": 30})
    second = migrated_kernel(clock=vendo_clock, entitlements={"plan_cache_ttl": 30})
    ticks = Ticks()
    for kernel in (first, second):
        kernel.providers.configure({})
        kernel.entitlements.plan_cache.clock = ticks
    first.entitlements.load_catalog(load_catalog(CATALOGS / "memento.toml"))
    with first.session() as session:
        owner = first.identity.create_user(session, "owner@example.com")
        team = first.identity.create_workspace(session, owner.id, "Team").id
    return first, second, team, ticks


def plan(kernel, subject) -> str:
    return kernel.entitlements.check(subject, "brainstorm").plan


def test_the_ttl_setting_reaches_the_cache(make_kernel) -> None:
    assert make_kernel().entitlements.plan_cache.ttl == 1.0  # the documented default
    assert make_kernel(entitlements={"plan_cache_ttl": 0}).entitlements.plan_cache.enabled is False


def test_the_writing_process_sees_a_plan_change_at_once(workers) -> None:
    first, _second, team, _ticks = workers
    assert plan(first, team) == "basic"  # cached: "no assignment"
    with first.session() as session:
        first.entitlements.assign(session, team, "pro")
    assert plan(first, team) == "pro"
    assert first.entitlements.check(team, "brainstorm").allowed


def test_another_process_sees_it_within_the_ttl(workers) -> None:
    first, second, team, ticks = workers
    assert plan(second, team) == "basic"
    with first.session() as session:
        first.entitlements.assign(session, team, "pro")
    ticks.now += 29.9
    assert plan(second, team) == "basic"  # still within its 30 s
    ticks.now += 0.1
    assert plan(second, team) == "pro"


def test_without_a_cache_another_process_sees_it_at_once(migrated_kernel, vendo_clock) -> None:
    first = migrated_kernel(clock=vendo_clock)
    second = migrated_kernel(clock=vendo_clock, entitlements={"plan_cache_ttl": 0})
    for kernel in (first, second):
        kernel.providers.configure({})
    first.entitlements.load_catalog(load_catalog(CATALOGS / "memento.toml"))
    assert plan(second, "usr_solo") == "basic"
    with first.session() as session:
        first.entitlements.assign(session, "usr_solo", "pro")
    assert plan(second, "usr_solo") == "pro"
    assert len(second.entitlements.plan_cache) == 0


def test_a_rolled_back_assignment_never_reaches_the_cache(workers) -> None:
    first, second, team, ticks = workers
    assert plan(first, team) == "basic"
    with pytest.raises(RuntimeError):
        with first.session() as session:
            first.entitlements.assign(session, team, "pro")
            raise RuntimeError("the subscription change failed after the assignment")
    assert plan(first, team) == "basic"
    ticks.now += 60
    assert plan(first, team) == plan(second, team) == "basic"


def test_a_savepoint_rolled_back_after_an_assignment_keeps_it(workers) -> None:
    first, _second, team, _ticks = workers
    assert plan(first, team) == "basic"
    with first.session() as session:
        first.entitlements.assign(session, team, "business")
        savepoint = session.begin_nested()
        savepoint.rollback()  # fires a (soft) rollback: the outer transaction still commits
    assert plan(first, team) == "business"


def test_the_assigning_transaction_reads_its_own_write(workers) -> None:
    first, _second, team, _ticks = workers
    assert plan(first, team) == "basic"
    with first.session() as session:
        first.entitlements.assign(session, team, "pro")
        _catalog, effective, _inactive, _row = first.entitlements._plan_of(session, team, first.now())
        assert effective.id == "pro"
    with first.session() as session:
        first.entitlements.assign(session, team, "business")
        first.entitlements.assign(session, team, "pro")
    assert plan(first, team) == "pro"


def test_a_trial_ends_on_time_with_a_cached_assignment(workers, vendo_clock) -> None:
    first, _second, team, _ticks = workers
    with first.session() as session:
        first.entitlements.assign(session, team, "pro", status="trialing")
    assert first.entitlements.check(team, "brainstorm").allowed
    vendo_clock.advance(days=30)  # the kernel's clock: past the trial, the cached row is re-judged
    decision = first.entitlements.check(team, "brainstorm")
    assert (decision.allowed, decision.reason) == (False, "SUBSCRIPTION_INACTIVE")


def test_counters_are_never_cached(workers) -> None:
    first, second, team, _ticks = workers
    with first.session() as session:
        first.entitlements.assign(session, team, "pro")
    before = second.entitlements.check(team, "semantic_search").used
    for _ in range(3):
        assert first.entitlements.consume(team, "semantic_search").allowed
    assert second.entitlements.check(team, "semantic_search").used == before + 3


def test_a_new_catalog_reaches_other_processes_within_the_ttl(workers, tmp_path) -> None:
    first, second, team, ticks = workers
    assert "Basic" in second.entitlements.check(team, "brainstorm").message
    text = (CATALOGS / "memento.toml").read_text()
    assert 'name = "Basic"' in text
    renamed = tmp_path / "memento.toml"
    renamed.write_text(text.replace('name = "Basic"', 'name = "Starter"', 1))
    catalog = load_catalog(renamed)
    version, changed = first.entitlements.load_catalog(catalog)
    assert changed and version == 2
    assert "Starter" in first.entitlements.check(team, "brainstorm").message
    assert "Basic" in second.entitlements.check(team, "brainstorm").message  # cached newest version
    ticks.now += 30
    assert "Starter" in second.entitlements.check(team, "brainstorm").message


def test_a_read_racing_an_invalidation_is_not_kept() -> None:
    cache = PlanCache(10)
    generation = cache.generation  # a reader starts reading the old row
    cache.invalidate(["ws_1"])  # meanwhile the assignment commits
    cache.put("ws_1", ("old",), generation)
    assert cache.get("ws_1") is MISS
    cache.put("ws_1", ("new",), cache.generation)
    assert cache.get("ws_1") == ("new",)


def test_the_cache_is_bounded() -> None:
    cache = PlanCache(10, max_entries=3)
    for index in range(5):
        cache.put(f"ws_{index}", index, cache.generation)
    assert len(cache) == 3
    assert [cache.get(f"ws_{i}") for i in range(5)] == [MISS, MISS, 2, 3, 4]
