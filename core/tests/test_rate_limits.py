"""Rate limits per plan and per API-key tier: fixed windows in the counter store, the most
constraining window deciding, refused hits counting nowhere, and the HTTP side (429
``RATE_LIMITED`` with ``Retry-After``, ``X-RateLimit-*`` on every gated response).

Runs on SQLite and PostgreSQL with a frozen clock; the cross-process proof is in
tests/test_rate_limits_processes.py.
"""

from __future__ import annotations

import logging
import tomllib
from datetime import datetime, timezone
from pathlib import Path

import pytest
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from sqlalchemy import select

from vendo import (
    ConfigError,
    InvalidInput,
    Principal,
    create_app,
    hookimpl,
    on_rollback,
    rate_limit_headers,
    rate_limited,
    require_feature,
)
from vendo.entitlements.catalog import load_catalog, parse_catalog
from vendo.entitlements.models import Counter
from vendo.entitlements.ratelimit import RateLimited, scope_of
from vendo.entitlements.store import SQLCounterStore
from vendo.errors import CounterStoreUnavailable

CATALOGS = Path(__file__).resolve().parents[2] / "examples" / "catalogs"
UTC = timezone.utc
START = datetime(2026, 3, 2, 10, 0, 30, tzinfo=UTC)
NEXT_MINUTE = int(datetime(2026, 3, 2, 10, 1, tzinfo=UTC).timestamp())

CATALOG = """
currency = "eur"

[features.chat]
kind = "metered"
period = "month"

[features.export]
kind = "boolean"

[plans.free]
name = "Free"
default = true
rate_limits = { per_minute = 3, per_day = 8 }
features = { chat = 100, export = false }

[plans.pro]
name = "Pro"
prices = [{ interval = "month", currency = "eur", amount = "10" }]
rate_limits = { per_minute = 10, per_day = 12 }
features = { chat = 1000, export = true }

[plans.internal]
name = "Internal"
prices = [{ interval = "month", currency = "eur", amount = "50" }]
features = { chat = "unlimited", export = true }

[rate_limit_tiers.partner]
per_second = 2
per_minute = 4
"""


def catalog(text: str = CATALOG):
    return parse_catalog(tomllib.loads(text), "test.toml", text)


@pytest.fixture
def limits(migrated_kernel, vendo_clock):
    vendo_clock.set(START)
    kernel = migrated_kernel(clock=vendo_clock)
    kernel.providers.configure({})
    kernel.entitlements.load_catalog(catalog())
    return kernel


def workspace(kernel, email="owner@example.com", plan=None):
    with kernel.session() as session:
        owner = kernel.identity.create_user(session, email)
        team = kernel.identity.create_workspace(session, owner.id, "Team")
        if plan:
            kernel.entitlements.assign(session, team.id, plan)
    return team.id, owner.id


def api_key(owner, team, credential, tier="partner"):
    return Principal(subject=owner, workspace=team, method="api_key", credential=credential,
                     attributes={"rate_limit_tier": tier})


def counters(kernel) -> dict[str, int]:
    with kernel.session() as session:
        return dict(session.execute(select(Counter.key, Counter.value).where(Counter.key.like("rl:%"))).all())


# -- the limiter --------------------------------------------------------------------------------


def test_minute_window_holds_until_the_boundary(limits, vendo_clock) -> None:
    team, _ = workspace(limits)
    results = [limits.rate_limits.hit(team) for _ in range(3)]
    assert [(r.allowed, r.window, r.limit, r.remaining) for r in results] == [
        (True, "minute", 3, 2), (True, "minute", 3, 1), (True, "minute", 3, 0)]
    assert results[0].plan == "free" and results[0].headers() == {
        "X-RateLimit-Limit": "3", "X-RateLimit-Remaining": "2", "X-RateLimit-Reset": str(NEXT_MINUTE)}
    refused = limits.rate_limits.hit(team)
    assert (refused.allowed, refused.window, refused.remaining, refused.retry_after) == (False, "minute", 0, 30)
    assert refused.reset_at == datetime(2026, 3, 2, 10, 1, tzinfo=UTC)
    assert refused.headers()["Retry-After"] == "30"
    vendo_clock.advance(seconds=29)  # 10:00:59, the last second of the window
    last_second = limits.rate_limits.hit(team)
    assert (last_second.allowed, last_second.retry_after) == (False, 1)
    vendo_clock.advance(seconds=1)  # 10:01:00, a new window
    fresh = limits.rate_limits.hit(team)
    assert (fresh.allowed, fresh.window, fresh.remaining) == (True, "minute", 2)
    assert fresh.reset_at == datetime(2026, 3, 2, 10, 2, tzinfo=UTC)


def test_day_window_holds_across_minutes_until_midnight_utc(limits, vendo_clock) -> None:
    team, _ = workspace(limits)  # 3 a minute, 8 a day
    for _minute in range(2):
        assert all(limits.rate_limits.hit(team).allowed for _ in range(3))
        vendo_clock.advance(minutes=1)
    assert all(limits.rate_limits.hit(team).allowed for _ in range(2))  # 10:02:30, the 8th of the day
    last = limits.rate_limits.peek(team)
    assert (last.allowed, last.window, last.remaining) == (False, "day", 0)
    refused = limits.rate_limits.hit(team)  # the minute window still has room: the day decides
    midnight = datetime(2026, 3, 3, tzinfo=UTC)
    assert (refused.allowed, refused.window, refused.limit, refused.reset_at) == (False, "day", 8, midnight)
    assert refused.retry_after == int((midnight - vendo_clock()).total_seconds())
    vendo_clock.advance(hours=5)
    later = limits.rate_limits.hit(team)
    assert (later.allowed, later.window) == (False, "day")
    vendo_clock.set(midnight)
    fresh = limits.rate_limits.hit(team)
    assert (fresh.allowed, fresh.window, fresh.remaining) == (True, "minute", 2)


def test_a_refused_hit_counts_in_no_window(limits, vendo_clock) -> None:
    team, _ = workspace(limits)  # 3 a minute, 8 a day
    for _ in range(3):
        limits.rate_limits.hit(team)
    for _ in range(5):
        assert not limits.rate_limits.hit(team).allowed
    epoch = int(START.timestamp())
    minute_key = f"rl:sub:{team}:minute:{epoch - epoch % 60}"
    day_key = f"rl:sub:{team}:day:{epoch - epoch % 86400}"
    assert counters(limits) == {minute_key: 3, day_key: 3}
    vendo_clock.advance(minutes=1)
    assert [limits.rate_limits.hit(team).allowed for _ in range(4)] == [True, True, True, False]
    vendo_clock.advance(minutes=1)
    assert [limits.rate_limits.hit(team).allowed for _ in range(3)] == [True, True, False]  # the day is full at 8
    assert counters(limits)[day_key] == 8
    assert limits.rate_limits.hit(team, cost=9).allowed is False
    assert counters(limits)[day_key] == 8


def test_the_most_constraining_window_decides(limits, vendo_clock) -> None:
    team, _ = workspace(limits, plan="pro")  # 10 a minute, 12 a day
    for _ in range(8):
        limits.rate_limits.hit(team)
    ninth = limits.rate_limits.hit(team)
    assert (ninth.window, ninth.limit, ninth.remaining) == ("minute", 10, 1)  # 1 left this minute, 3 today
    vendo_clock.advance(minutes=1)
    tenth = limits.rate_limits.hit(team)
    assert (tenth.window, tenth.limit, tenth.remaining) == ("day", 12, 2)  # 9 left this minute, 2 today
    assert tenth.reset_at == datetime(2026, 3, 3, tzinfo=UTC)


def test_api_key_tier_overrides_the_plan_per_key(limits, vendo_clock) -> None:
    team, owner = workspace(limits, plan="pro")
    key_a = api_key(owner, team, "key_a")  # partner: 2 a second, 4 a minute
    first = limits.rate_limits.hit(key_a)
    assert (first.tier, first.plan, first.window, first.limit, first.remaining) == ("partner", None, "second", 2, 1)
    assert first.scope == "key:key_a"
    assert limits.rate_limits.hit(key_a).remaining == 0
    refused = limits.rate_limits.hit(key_a)
    assert (refused.allowed, refused.window, refused.retry_after) == (False, "second", 1)
    vendo_clock.advance(seconds=1)
    tie = limits.rate_limits.hit(key_a)  # 1 left in this second and this minute: the later reset is reported
    assert (tie.window, tie.remaining) == ("minute", 1)
    limits.rate_limits.hit(key_a)
    both = limits.rate_limits.hit(key_a)  # both exhausted: nothing passes before the minute resets
    assert (both.allowed, both.window, both.retry_after) == (False, "minute", 29)
    other_key = limits.rate_limits.hit(api_key(owner, team, "key_b"))
    assert (other_key.allowed, other_key.scope, other_key.remaining) == (True, "key:key_b", 1)  # its own counters
    standard = limits.rate_limits.hit(api_key(owner, team, "key_c", tier="standard"))  # not a catalog tier
    assert (standard.tier, standard.plan, standard.limit, standard.scope) == (None, "pro", 10, "key:key_c")
    signed_in = Principal(subject=owner, method="session:password", credential="sid_1")
    mine = limits.rate_limits.hit(signed_in, subject=team)
    assert (mine.scope, mine.plan, mine.limit, mine.remaining) == (f"sub:{owner}", "pro", 10, 9)


def test_limits_follow_the_subjects_plan(limits) -> None:
    team, owner = workspace(limits)
    assert limits.rate_limits.hit(team).limit == 3
    with limits.session() as session:
        limits.entitlements.assign(session, team, "pro")
    upgraded = limits.rate_limits.hit(team)
    assert (upgraded.plan, upgraded.limit, upgraded.remaining) == ("pro", 10, 8)  # same counters, new limits
    with limits.session() as session:
        limits.entitlements.assign(session, team, "internal")
    before = counters(limits)
    unlimited = limits.rate_limits.hit(team)
    assert (unlimited.allowed, unlimited.limited, unlimited.plan, unlimited.headers()) == (True, False, "internal", {})
    assert counters(limits) == before  # nothing to count
    policy = limits.rate_limits.policy(Principal(subject=owner, workspace=team, method="session:password"))
    assert (policy.scope, policy.plan, policy.limits) == (f"sub:{owner}", "internal", None)


def test_peek_counts_nothing_and_bad_input_is_refused(limits) -> None:
    team, _ = workspace(limits)
    assert limits.rate_limits.peek(team).remaining == 3
    assert counters(limits) == {}
    limits.rate_limits.hit(team, cost=2)
    assert limits.rate_limits.peek(team).remaining == 1
    with pytest.raises(InvalidInput) as bad_cost:
        limits.rate_limits.hit(team, cost=0)
    assert bad_cost.value.code == "invalid_amount"
    with pytest.raises(InvalidInput) as no_subject:
        scope_of("")
    assert no_subject.value.code == "invalid_subject"
    limits.rate_limits.hit(team)
    with pytest.raises(RateLimited) as refused:
        limits.rate_limits.enforce(team)
    assert (refused.value.status_code, refused.value.code) == (429, "RATE_LIMITED")
    assert refused.value.headers["Retry-After"] == "30" and refused.value.details["window"] == "minute"


def test_without_a_catalog_nothing_is_limited(migrated_kernel, vendo_clock) -> None:
    kernel = migrated_kernel(clock=vendo_clock)
    kernel.providers.configure({})
    result = kernel.rate_limits.hit("usr_anyone")
    assert (result.allowed, result.limited, result.headers()) == (True, False, {})


class BrokenStore(SQLCounterStore):
    """A counter store whose server is down."""

    name = "broken"

    def try_add(self, session, buckets, amount):
        raise CounterStoreUnavailable("counter server unreachable", details={"reason": "unreachable"})

    add = read = try_add


class BrokenStorePlugin:
    @hookimpl
    def vendo_register_counter_stores(self, register):
        register("broken", BrokenStore())


def test_a_failing_store_fails_open_and_says_so(migrated_kernel, vendo_clock, caplog) -> None:
    kernel = migrated_kernel({"broken": BrokenStorePlugin()}, clock=vendo_clock)
    kernel.providers.configure({"counters": "broken"})
    kernel.entitlements.load_catalog(catalog())
    team, _ = workspace(kernel)
    with caplog.at_level(logging.ERROR, logger="vendo.rate_limits"):
        result = kernel.rate_limits.hit(team)
    assert (result.allowed, result.degraded, result.headers()) == (True, True, {})
    assert "counter store is unavailable (counter server unreachable)" in caplog.text


class OutsideStore(SQLCounterStore):
    """A counter store outside the database (a dict), registering the undo of every move;
    ``fail_after_move`` makes it fail once it has moved the counters."""

    name = "outside"

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.fail_after_move: Exception | None = None

    def try_add(self, session, buckets, amount):
        if any(b.limit is not None and self.values.get(b.key, 0) + amount > b.limit for b in buckets):
            return None
        for bucket in buckets:
            self.values[bucket.key] = self.values.get(bucket.key, 0) + amount
        on_rollback(session, lambda: self.add(None, buckets, -amount))
        if self.fail_after_move is not None:
            raise self.fail_after_move
        return [self.values[b.key] for b in buckets]

    def add(self, session, buckets, amount):
        for bucket in buckets:
            self.values[bucket.key] = self.values.get(bucket.key, 0) + amount
        return [self.values[b.key] for b in buckets]

    def read(self, session, keys):
        return [self.values.get(key, 0) for key in keys]


class OutsideStorePlugin:
    def __init__(self) -> None:
        self.store = OutsideStore()

    @hookimpl
    def vendo_register_counter_stores(self, register):
        register("outside", self.store)


def test_a_store_outside_the_database_and_its_undo(migrated_kernel, vendo_clock) -> None:
    plugin = OutsideStorePlugin()
    kernel = migrated_kernel({"outside": plugin}, clock=vendo_clock)
    kernel.providers.configure({"counters": "outside"})
    kernel.entitlements.load_catalog(catalog())
    team, _ = workspace(kernel)
    assert [kernel.rate_limits.hit(team).allowed for _ in range(4)] == [True, True, True, False]
    assert sorted(plugin.store.values.values()) == [3, 3] and counters(kernel) == {}  # nothing in SQL
    vendo_clock.advance(minutes=1)
    plugin.store.fail_after_move = RuntimeError("connection reset after the write")
    with pytest.raises(RuntimeError):
        kernel.rate_limits.hit(team)
    assert sorted(plugin.store.values.values()) == [0, 3, 3]  # the move was undone
    plugin.store.fail_after_move = CounterStoreUnavailable("timed out after the write")
    assert kernel.rate_limits.hit(team).degraded
    assert sorted(plugin.store.values.values()) == [0, 3, 3]


def test_purge_deletes_only_ended_windows(limits, vendo_clock) -> None:
    team, owner = workspace(limits)
    limits.rate_limits.hit(team)
    limits.rate_limits.hit(api_key(owner, team, "key_a"))
    limits.entitlements.consume(team, "chat", member=owner)
    assert limits.rate_limits.purge_expired() == 0  # every window is current
    vendo_clock.advance(days=1)
    limits.rate_limits.hit(team)
    current = {f"rl:sub:{team}:minute:{_start(vendo_clock(), 60)}", f"rl:sub:{team}:day:{_start(vendo_clock(), 86400)}"}
    assert limits.rate_limits.purge_expired(batch=1) == 4  # team's minute and day, the key's second and minute
    assert set(counters(limits)) == current
    assert limits.entitlements.check(team, "chat").used == 1  # usage counters are not rate-limit counters
    assert limits.rate_limits.peek(team).remaining == 2


def _start(moment: datetime, seconds: int) -> int:
    epoch = int(moment.timestamp())
    return epoch - epoch % seconds


# -- the catalog --------------------------------------------------------------------------------


def test_example_catalogs_declare_the_seed_limits(limits) -> None:
    memento = load_catalog(CATALOGS / "memento.toml")
    assert memento.plans["basic"].rate_limits.windows() == [("minute", 60, 60), ("day", 86400, 1000)]
    assert memento.plans["pro"].rate_limits.windows() == [("minute", 60, 300), ("day", 86400, 10000)]
    assert memento.plans["business"].rate_limits.per_minute > 300
    assert memento.plans["enterprise"].rate_limits.per_day > memento.plans["business"].rate_limits.per_day
    gilo = load_catalog(CATALOGS / "gilo.toml")
    assert (gilo.plans["free"].rate_limits.per_minute, gilo.plans["free"].rate_limits.per_day) == (60, 1000)
    assert (gilo.plans["pro"].rate_limits.per_minute, gilo.plans["pro"].rate_limits.per_day) == (300, 10000)
    assert gilo.plans["team"].rate_limits.per_day is None
    limits.entitlements.load_catalog(memento)
    team, owner = workspace(limits)
    assert limits.rate_limits.hit(team).limit == 60
    partner = limits.rate_limits.policy(api_key(owner, team, "key_p"))
    assert (partner.tier, partner.limits.per_minute) == ("partner", 1000)


@pytest.mark.parametrize(
    ("limits_text", "field", "problem"),
    [
        ("{ per_minute = 0 }", "plans.free.rate_limits.per_minute", "greater than 0"),
        ("{ per_minute = -5 }", "plans.free.rate_limits.per_minute", "greater than 0"),
        ("{ per_minute = \"60\" }", "plans.free.rate_limits.per_minute", "valid integer"),
        ("{ per_minute = true }", "plans.free.rate_limits.per_minute", "valid integer"),
        ("{ per_minute = 1.5 }", "plans.free.rate_limits.per_minute", "valid integer"),
        ("{ per_week = 100 }", "plans.free.rate_limits.per_week", "unknown field"),
    ],
)
def test_invalid_rate_limits_name_the_file_line_and_field(limits_text, field, problem) -> None:
    text = CATALOG.replace("rate_limits = { per_minute = 3, per_day = 8 }", f"rate_limits = {limits_text}")
    with pytest.raises(ConfigError) as error:
        catalog(text)
    line = text.splitlines().index(f"rate_limits = {limits_text}") + 1
    assert f"test.toml:{line}: {field}: " in error.value.message and problem in error.value.message


def test_invalid_rate_limit_tiers() -> None:
    with pytest.raises(ConfigError, match=r"rate_limit_tiers.partner.per_second: Input should be greater than 0"):
        catalog(CATALOG.replace("per_second = 2", "per_second = 0"))
    with pytest.raises(ConfigError, match=r"tier names are 1 to 40 lowercase letters"):
        catalog(CATALOG.replace("[rate_limit_tiers.partner]", "[rate_limit_tiers.Partner]"))
    with pytest.raises(ConfigError, match=r"rate_limit_tiers.partner.burst: unknown field"):
        catalog(CATALOG + "burst = 3\n")


# -- over HTTP ----------------------------------------------------------------------------------


class FakeKeys:
    """An API-key authenticator for tests: ``X-Test-Key: <credential>:<tier>``."""

    def __init__(self) -> None:
        self.owner = self.team = ""

    def authenticate(self, request):
        value = request.headers.get("x-test-key")
        if not value:
            return None
        credential, tier = value.split(":")
        return api_key(self.owner, self.team, credential, tier)

    @hookimpl
    def vendo_register_authenticators(self, register):
        register("test_keys", self)


class Integrator:
    """An integrator's routes: metered, rate limited only, both, and returning its own Response."""

    @hookimpl
    def vendo_register_routes(self, register):
        router = APIRouter()

        @router.post("/workspaces/{workspace_id}/summaries")
        def summarise(workspace_id: str, decision=Depends(require_feature("chat"))) -> dict:
            return {"used": decision.used}

        @router.get("/workspaces/{workspace_id}/ping")
        def ping(workspace_id: str, result=Depends(rate_limited())) -> dict:
            return {"remaining": result.remaining}

        @router.post("/workspaces/{workspace_id}/both", dependencies=[Depends(rate_limited())])
        def both(workspace_id: str, decision=Depends(require_feature("chat"))) -> dict:
            return {"used": decision.used}

        @router.get("/workspaces/{workspace_id}/raw", dependencies=[Depends(rate_limited())])
        def raw(workspace_id: str, request: Request) -> JSONResponse:
            return JSONResponse({"ok": True}, headers=rate_limit_headers(request))

        register(router)


@pytest.fixture
def http(migrated_kernel, vendo_clock):
    vendo_clock.set(START)
    keys = FakeKeys()
    kernel = migrated_kernel({"test_keys": keys, "integrator": Integrator()}, clock=vendo_clock)
    kernel.providers.configure({})
    kernel.entitlements.load_catalog(catalog())
    people = {}
    with kernel.session() as session:
        for name in ("ada", "eve"):
            user = kernel.identity.create_user(session, f"{name}@example.com")
            token = kernel.sessions.issue(session, user.id, "t").access_token
            people[name] = (user.id, {"Authorization": f"Bearer {token}"})
        team = kernel.identity.create_workspace(session, people["ada"][0], "Team")
    keys.owner, keys.team = people["ada"][0], team.id
    client = TestClient(create_app(kernel), raise_server_exceptions=False)
    client.__enter__()
    yield kernel, client, people, team.id
    client.__exit__(None, None, None)


def rate_headers(response) -> tuple[str | None, str | None, str | None]:
    return tuple(response.headers.get(f"x-ratelimit-{name}") for name in ("limit", "remaining", "reset"))


def test_every_gated_response_carries_the_headers_and_429_retry_after(http) -> None:
    kernel, client, people, team = http
    ada = people["ada"][1]
    checked = client.post("/api/v1/check", json={"feature": "chat", "subject": team}, headers=ada)
    assert checked.status_code == 200 and rate_headers(checked) == ("3", "2", str(NEXT_MINUTE))
    used_up = client.post("/api/v1/consume", json={"feature": "chat", "subject": team, "amount": 100}, headers=ada)
    assert used_up.status_code == 200 and rate_headers(used_up) == ("3", "1", str(NEXT_MINUTE))
    quota = client.post("/api/v1/consume", json={"feature": "chat", "subject": team}, headers=ada)
    assert quota.status_code == 429 and quota.json()["error"]["code"] == "WORKSPACE_QUOTA_EXHAUSTED"
    assert rate_headers(quota) == ("3", "0", str(NEXT_MINUTE))  # a refused decision carries them too
    assert int(quota.headers["retry-after"]) > 3600  # the quota's reset, not the rate limit's
    limited = client.post("/api/v1/track", json={"feature": "chat", "subject": team, "amount": -1}, headers=ada)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "30"
    assert rate_headers(limited) == ("3", "0", str(NEXT_MINUTE))
    error = limited.json()["error"]
    assert error["code"] == "RATE_LIMITED" and error["request_id"]
    assert (error["details"]["window"], error["details"]["limit"], error["details"]["retry_after"]) == ("minute", 3, 30)
    assert kernel.entitlements.check(team, "chat").used == 100  # the rate-limited track recorded nothing
    kernel.clock.advance(seconds=30)
    tier_limited = client.post("/api/v1/consume", json={"feature": "export", "subject": team}, headers=ada)
    assert tier_limited.status_code == 402 and "retry-after" not in tier_limited.headers
    assert rate_headers(tier_limited) == ("3", "2", str(NEXT_MINUTE + 60))
    unknown = client.post("/api/v1/check", json={"feature": "teleport", "subject": team}, headers=ada)
    assert unknown.status_code == 404 and rate_headers(unknown)[1] == "1"


def test_integrator_dependencies(http) -> None:
    kernel, client, people, team = http
    ada = people["ada"][1]
    summary = client.post(f"/api/v1/workspaces/{team}/summaries", headers=ada)
    assert summary.json() == {"used": 1} and rate_headers(summary) == ("3", "2", str(NEXT_MINUTE))
    ping = client.get(f"/api/v1/workspaces/{team}/ping", headers=ada)
    assert ping.json() == {"remaining": 1} and rate_headers(ping)[1] == "1"
    kernel.clock.advance(minutes=1)
    both = client.post(f"/api/v1/workspaces/{team}/both", headers=ada)  # two dependencies, one hit
    assert both.json() == {"used": 2} and rate_headers(both)[1] == "2"
    raw = client.get(f"/api/v1/workspaces/{team}/raw", headers=ada)  # a Response built by the route
    assert raw.json() == {"ok": True} and rate_headers(raw)[1] == "1"
    client.get(f"/api/v1/workspaces/{team}/ping", headers=ada)
    refused = client.post(f"/api/v1/workspaces/{team}/summaries", headers=ada)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "RATE_LIMITED"
    assert refused.headers["retry-after"] == "30" and rate_headers(refused)[1] == "0"
    assert kernel.entitlements.check(team, "chat").used == 2  # the limited request consumed nothing
    stranger = client.get(f"/api/v1/workspaces/{team}/ping", headers=people["eve"][1])
    assert stranger.status_code == 404 and rate_headers(stranger) == (None, None, None)


def test_api_key_tier_over_http(http) -> None:
    _kernel, client, _people, team = http
    body = {"feature": "chat", "subject": team}
    partner = client.post("/api/v1/check", json=body, headers={"X-Test-Key": "key_a:partner"})
    assert rate_headers(partner)[:2] == ("2", "1")  # 2 a second is the tightest window
    assert rate_headers(client.post("/api/v1/check", json=body, headers={"X-Test-Key": "key_a:partner"}))[1] == "0"
    refused = client.post("/api/v1/check", json=body, headers={"X-Test-Key": "key_a:partner"})
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    standard = client.post("/api/v1/check", json=body, headers={"X-Test-Key": "key_b:standard"})
    assert standard.status_code == 200 and rate_headers(standard)[:2] == ("3", "2")  # the workspace plan's


def test_nobody_spends_or_reads_another_tenants_limit(http) -> None:
    kernel, client, people, team = http
    for _ in range(5):
        stranger = client.post("/api/v1/check", json={"feature": "chat", "subject": team}, headers=people["eve"][1])
        assert stranger.status_code == 404 and rate_headers(stranger) == (None, None, None)
    own = client.post("/api/v1/check", json={"feature": "chat", "subject": team}, headers=people["ada"][1])
    assert rate_headers(own)[1] == "2"
    assert client.post("/api/v1/check", json={"feature": "chat"}, headers=people["eve"][1]).status_code == 200
    with kernel.session() as session:
        kernel.entitlements.assign(session, team, "internal")
    unlimited = client.post("/api/v1/check", json={"feature": "chat", "subject": team}, headers=people["ada"][1])
    assert unlimited.status_code == 200 and rate_headers(unlimited) == (None, None, None)
