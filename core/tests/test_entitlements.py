"""Plans and entitlements: check, consume, track, refund, holds, periods, pooled quotas.

Runs on SQLite and PostgreSQL, with the example catalogs shipped in examples/catalogs/.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from vendo import Conflict, ConfigError, InvalidInput, NotFound, hookimpl
from vendo.entitlements.catalog import load_catalog
from vendo.entitlements.models import Counter, LedgerEntry
from vendo.entitlements.periods import period_end, period_start
from vendo.entitlements.store import Bucket

CATALOGS = Path(__file__).resolve().parents[2] / "examples" / "catalogs"


@pytest.fixture
def memento(migrated_kernel, vendo_clock):
    kernel = migrated_kernel(clock=vendo_clock)
    kernel.providers.configure({})
    kernel.entitlements.load_catalog(load_catalog(CATALOGS / "memento.toml"))
    return kernel


def workspace(kernel, owner_email="owner@example.com", plan=None):
    with kernel.session() as session:
        owner = kernel.identity.create_user(session, owner_email)
        team = kernel.identity.create_workspace(session, owner.id, "Team")
        if plan:
            kernel.entitlements.assign(session, team.id, plan)
    return team.id, owner.id


def test_boolean_feature_and_upgrade_tier(memento) -> None:
    team, _ = workspace(memento)
    decision = memento.entitlements.check(team, "brainstorm")
    assert (decision.allowed, decision.reason, decision.upgrade_tier) == (False, "TIER_LIMITED", "pro")
    assert "not included in the Basic plan; upgrade to Pro" in decision.message
    api = memento.entitlements.check(team, "api_access")
    assert api.upgrade_tier == "business"  # the cheapest plan that has it
    with memento.session() as session:
        memento.entitlements.assign(session, team, "pro")
    assert memento.entitlements.check(team, "brainstorm").allowed


def test_lifetime_starter_pack_never_resets(memento, vendo_clock) -> None:
    team, owner = workspace(memento)
    for _ in range(30):
        assert memento.entitlements.consume(team, "semantic_search", member=owner).allowed
    refused = memento.entitlements.consume(team, "semantic_search", member=owner)
    assert (refused.allowed, refused.reason, refused.used, refused.limit) == (False, "WORKSPACE_QUOTA_EXHAUSTED", 30, 30)
    assert refused.resets_at is None and refused.upgrade_tier == "pro"
    vendo_clock.advance(days=400)
    assert not memento.entitlements.check(team, "semantic_search").allowed


def test_monthly_quota_resets_on_the_first_of_the_month(memento, vendo_clock) -> None:
    vendo_clock.set(datetime(2026, 1, 31, 23, 59, tzinfo=timezone.utc))
    team, owner = workspace(memento, plan="pro")
    assert memento.entitlements.consume(team, "reformulate", 50, member=owner).allowed
    full = memento.entitlements.check(team, "reformulate")
    assert (full.allowed, full.remaining, full.resets_at) == (False, 0, datetime(2026, 2, 1, tzinfo=timezone.utc))
    vendo_clock.advance(minutes=1)
    fresh = memento.entitlements.check(team, "reformulate")
    assert (fresh.allowed, fresh.used, fresh.resets_at) == (True, 0, datetime(2026, 3, 1, tzinfo=timezone.utc))


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        ("minute", "2026-03-01T10:15:42", "2026-03-01T10:15:00", "2026-03-01T10:16:00"),
        ("hour", "2026-03-01T10:15:42", "2026-03-01T10:00:00", "2026-03-01T11:00:00"),
        ("day", "2026-12-31T23:59:59", "2026-12-31T00:00:00", "2027-01-01T00:00:00"),
        ("month", "2026-12-31T23:59:59", "2026-12-01T00:00:00", "2027-01-01T00:00:00"),
        ("month", "2028-02-29T12:00:00", "2028-02-01T00:00:00", "2028-03-01T00:00:00"),
    ],
)
def test_period_arithmetic_in_utc(period, now, start, end) -> None:
    utc = lambda text: datetime.fromisoformat(text).replace(tzinfo=timezone.utc)  # noqa: E731
    assert period_start(period, utc(now)) == utc(start)
    assert period_end(period, utc(now)) == utc(end)
    paris = utc(now).astimezone(timezone(timedelta(hours=1)))
    assert period_start(period, paris) == utc(start)


def test_pooled_quota_with_a_member_cap(memento) -> None:
    team, ada = workspace(memento, plan="business")
    with memento.session() as session:
        bob = memento.identity.create_user(session, "bob@example.com").id
    assert memento.entitlements.consume(team, "semantic_search", 300, member=ada).allowed
    capped = memento.entitlements.consume(team, "semantic_search", member=ada)
    assert (capped.allowed, capped.reason) == (False, "USER_QUOTA_EXHAUSTED")
    assert capped.extra == {"member_limit": 300, "member_used": 300}
    assert memento.entitlements.consume(team, "semantic_search", 300, member=bob).allowed
    assert memento.entitlements.check(team, "semantic_search").used == 600  # one pool for the workspace


def test_add_ons_stack_on_the_plan(memento) -> None:
    team, owner = workspace(memento)
    with memento.session() as session:
        memento.entitlements.assign(session, team, "pro", add_ons={"ai_pack": 2})
    assert memento.entitlements.check(team, "chat").limit == 100 + 2 * 1000
    with pytest.raises(InvalidInput, match="not offered"), memento.session() as session:
        memento.entitlements.assign(session, team, "pro", add_ons={"extra_seats": 1})


def test_trial_then_fallback_to_the_free_plan(memento, vendo_clock) -> None:
    team, _ = workspace(memento)
    with memento.session() as session:
        memento.entitlements.assign(session, team, "pro", status="trialing")
    assert memento.entitlements.entitlements(team)["status"] == "trialing"
    assert memento.entitlements.check(team, "brainstorm").allowed
    vendo_clock.advance(days=14, seconds=1)
    lapsed = memento.entitlements.check(team, "brainstorm")
    assert (lapsed.allowed, lapsed.reason, lapsed.upgrade_tier) == (False, "SUBSCRIPTION_INACTIVE", "pro")
    assert memento.entitlements.check(team, "max_notebooks").limit == 3  # Basic applies again


def test_past_due_keeps_entitlements_during_grace(memento, vendo_clock) -> None:
    team, _ = workspace(memento)
    with memento.session() as session:
        memento.entitlements.assign(session, team, "pro", status="past_due",
                                    grace_until=vendo_clock() + timedelta(days=3))
    assert memento.entitlements.check(team, "brainstorm").allowed
    vendo_clock.advance(days=3)
    assert memento.entitlements.check(team, "brainstorm").reason == "SUBSCRIPTION_INACTIVE"


def test_idempotent_consume_and_conflicts(memento) -> None:
    team, owner = workspace(memento, plan="pro")
    first = memento.entitlements.consume(team, "chat", 3, member=owner, idempotency_key="req-1")
    again = memento.entitlements.consume(team, "chat", 3, member=owner, idempotency_key="req-1")
    assert first.used == 3 and again.replayed and again.used == 3
    with pytest.raises(Conflict) as conflict:
        memento.entitlements.consume(team, "chat", 4, member=owner, idempotency_key="req-1")
    assert conflict.value.code == "idempotency_conflict"
    with memento.session() as session:
        assert session.query(LedgerEntry).filter_by(feature="chat").count() == 1


def test_refund_once(memento) -> None:
    team, owner = workspace(memento, plan="pro")
    memento.entitlements.consume(team, "chat", 5, member=owner, idempotency_key="llm-1")
    assert memento.entitlements.refund("llm-1")["used"] == 0
    with pytest.raises(Conflict, match="already refunded"):
        memento.entitlements.refund("llm-1")
    with pytest.raises(NotFound):
        memento.entitlements.refund("never-seen")
    assert memento.entitlements.check(team, "chat").used == 0


def test_track_records_without_gating_and_limit_gauges(memento) -> None:
    team, owner = workspace(memento)
    assert memento.entitlements.track(team, "chat", 7, member=owner, tokens=1200, cost=0.01).allowed
    assert memento.entitlements.check(team, "chat").used == 7  # Basic has 0 chat: tracked anyway
    for _ in range(3):
        assert memento.entitlements.consume(team, "max_notebooks").allowed
    assert memento.entitlements.consume(team, "max_notebooks").reason == "WORKSPACE_QUOTA_EXHAUSTED"
    memento.entitlements.track(team, "max_notebooks", -1)  # a notebook was deleted
    assert memento.entitlements.consume(team, "max_notebooks").allowed
    with pytest.raises(InvalidInput):
        memento.entitlements.track(team, "brainstorm", 1)


@pytest.mark.parametrize("amount", [0, -1, 1.5, True])
def test_bad_amounts(memento, amount) -> None:
    team, _ = workspace(memento)
    with pytest.raises(InvalidInput):
        memento.entitlements.consume(team, "chat", amount)


def test_unknown_feature(memento) -> None:
    team, _ = workspace(memento)
    with pytest.raises(NotFound) as info:
        memento.entitlements.check(team, "teleport")
    assert info.value.code == "unknown_feature"


def test_reserve_commit_release_and_expiry(memento, vendo_clock) -> None:
    team, owner = workspace(memento, plan="pro")
    hold = memento.entitlements.reserve(team, "chat", 60, member=owner, ttl=30)
    assert hold.allowed and hold.used == 60
    assert not memento.entitlements.reserve(team, "chat", 41, member=owner).allowed  # holds count at once
    assert memento.entitlements.commit(hold.hold_id, 25)["used"] == 25
    with pytest.raises(Conflict, match="already committed"):
        memento.entitlements.release(hold.hold_id)
    second = memento.entitlements.reserve(team, "chat", 50, member=owner, ttl=30)
    assert memento.entitlements.release(second.hold_id)["used"] == 25
    third = memento.entitlements.reserve(team, "chat", 70, member=owner, ttl=30)
    assert third.allowed and memento.entitlements.check(team, "chat").used == 95
    vendo_clock.advance(seconds=31)
    assert memento.entitlements.release_expired() == 1
    assert memento.entitlements.check(team, "chat").used == 25
    with memento.session() as session:
        commits = session.query(LedgerEntry).filter_by(kind="commit").all()
        assert [(c.amount, c.feature) for c in commits] == [(25, "chat")]


def test_catalog_versions_keep_subscribers_terms(memento, tmp_path) -> None:
    team, owner = workspace(memento, plan="pro")
    text = (CATALOGS / "memento.toml").read_text().replace("reformulate = 50", "reformulate = 5")
    edited = tmp_path / "memento-v2.toml"
    edited.write_text(text)
    version, changed = memento.entitlements.load_catalog(load_catalog(edited))
    assert (version, changed) == (2, True)
    assert memento.entitlements.load_catalog(load_catalog(edited)) == (2, False)
    assert memento.entitlements.check(team, "reformulate").limit == 50  # still on version 1's terms
    with memento.session() as session:
        other = memento.identity.create_user(session, "new@example.com")
        memento.entitlements.assign(session, other.id, "pro")
    assert memento.entitlements.check(other.id, "reformulate").limit == 5
    # a renewal or a seat change (the billing domain assigns the same plan again) keeps the terms
    with memento.session() as session:
        memento.entitlements.assign(session, team, "pro", seats=3)
    assert memento.entitlements.check(team, "reformulate").limit == 50
    # another plan, then back: the current catalog's terms
    with memento.session() as session:
        memento.entitlements.assign(session, team, "business")
        memento.entitlements.assign(session, team, "pro")
    assert memento.entitlements.check(team, "reformulate").limit == 5


def test_usage_meters_and_history(memento) -> None:
    team, owner = workspace(memento, plan="pro")
    memento.entitlements.consume(team, "chat", 85, member=owner, tokens=900)
    memento.entitlements.consume(team, "reformulate", 1, member=owner)
    meters = {m["feature"]: m for m in memento.entitlements.usage(team)["meters"]}
    assert meters["chat"]["used"] == 85 and meters["chat"]["warning"] is True
    assert meters["reformulate"]["warning"] is False
    history = memento.entitlements.usage_history(team, feature="chat")
    assert history[0]["units"] == 85 and history[0]["tokens"] == 900


@pytest.mark.parametrize(
    ("mutation", "fragment"),
    [
        (lambda t: t.replace('kind = "metered"\nperiod = "month"\ndescription = "AI chat messages"',
                             'kind = "metered"\nperiod = "fortnight"\ndescription = "AI chat messages"'),
         "features.chat.period"),
        (lambda t: t.replace("chat = 100\n", "chat = -4\n"), "plans.pro.features.chat.limit"),
        (lambda t: t.replace("brainstorm = true\napi_access = false", "brainstorm = true\nteleport = true\napi_access = false", 1),
         "plans.pro.features.teleport: not declared"),
        (lambda t: t.replace("default = true", "default = false"), "exactly one plan must be"),
        (lambda t: t.replace("[plans.pro]", "[plans.pro\n"), "invalid TOML"),
    ],
)
def test_malformed_catalogs_name_file_line_and_field(tmp_path, mutation, fragment) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(mutation((CATALOGS / "memento.toml").read_text()))
    with pytest.raises(ConfigError) as info:
        load_catalog(bad)
    assert str(bad) in info.value.message and fragment in info.value.message


def test_catalog_error_points_at_the_line(tmp_path) -> None:
    text = (CATALOGS / "memento.toml").read_text().replace("chat = 100\n", "chat = -4\n")
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    line = next(n for n, l in enumerate(text.splitlines(), 1) if l == "chat = -4")
    with pytest.raises(ConfigError) as info:
        load_catalog(bad)
    assert f"{bad}:{line}: plans.pro.features.chat.limit" in info.value.message


def test_qoredb_catalog_previews_then_prompts(migrated_kernel) -> None:
    kernel = migrated_kernel()
    kernel.providers.configure({})
    kernel.entitlements.load_catalog(load_catalog(CATALOGS / "qoredb.toml"))
    user = "usr_desktop"
    results = [kernel.entitlements.consume(user, "sandbox_changes") for _ in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]
    assert (results[-1].reason, results[-1].upgrade_tier) == ("USER_QUOTA_EXHAUSTED", "pro")
    assert kernel.entitlements.check(user, "er_diagram").upgrade_tier == "pro"


def test_no_overspend_under_concurrent_threads(memento) -> None:
    """Many threads take units of a quota of 100: exactly 100 are accepted, the ledger holds
    exactly those, and the counter equals the ledger."""
    team, owner = workspace(memento, plan="pro")  # chat: 100 a month
    accepted: list[bool] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        for attempt in range(15):
            result = memento.entitlements.consume(team, "chat", member=owner, idempotency_key=f"t{index}-{attempt}")
            with lock:
                accepted.append(result.allowed)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert accepted.count(True) == 100 and len(accepted) == 120
    with memento.session() as session:
        ledger = session.query(LedgerEntry).filter_by(feature="chat", kind="consume").count()
        counter = session.query(Counter).filter(Counter.key.like(f"{team}:chat:%")).one()
    assert ledger == 100 and counter.value == 100


class DictStore:
    """A counter store kept in memory (one process): proves the family is pluggable."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.lock = threading.Lock()

    def try_add(self, session, buckets: list[Bucket], amount: int):
        with self.lock:
            if any(b.limit is not None and self.values.get(b.key, 0) + amount > b.limit for b in buckets):
                return None
            return self.add(session, buckets, amount)

    def add(self, session, buckets: list[Bucket], amount: int):
        for bucket in buckets:
            self.values[bucket.key] = self.values.get(bucket.key, 0) + amount
        return [self.values[b.key] for b in buckets]

    def read(self, session, keys):
        return [self.values.get(k, 0) for k in keys]

    def overwrite(self, session, values):
        with self.lock:
            self.values.update(values)


class MemoryCounters:
    def __init__(self) -> None:
        self.store = DictStore()

    @hookimpl
    def vendo_register_counter_stores(self, register):
        register("memory", self.store)


def test_counter_store_is_chosen_by_configuration(migrated_kernel) -> None:
    plugin = MemoryCounters()
    kernel = migrated_kernel({"memory-counters": plugin}, providers={"counters": "memory"})
    kernel.providers.configure(kernel.settings.providers)
    kernel.entitlements.load_catalog(load_catalog(CATALOGS / "qoredb.toml"))
    assert kernel.entitlements.consume("usr_1", "sandbox_changes").allowed
    assert list(plugin.store.values.values()) == [1]
    with kernel.session() as session:
        assert session.query(Counter).count() == 0  # the SQL store was not used
        assert session.query(LedgerEntry).count() == 1  # the ledger always is


def test_server_maintenance_releases_expired_holds(memento, vendo_clock) -> None:
    """`maintain()` (run by the server every few seconds) gives back holds whose owner never settled them."""
    team, owner = workspace(memento, plan="pro")
    hold = memento.entitlements.reserve(team, "chat", 40, member=owner, ttl=10)
    vendo_clock.advance(seconds=5)
    memento.entitlements.maintain()
    assert memento.entitlements.check(team, "chat").used == 40  # not expired yet
    vendo_clock.advance(seconds=6)
    memento.entitlements.maintain()
    assert memento.entitlements.check(team, "chat").used == 0
    with pytest.raises(Conflict, match="already released"):
        memento.entitlements.commit(hold.hold_id, 10)
