"""Feature flags with a percentage rollout per plan: deterministic buckets, monotone rollouts,
plan rules (trials and lapsed subscriptions included), the catalog's validation, and
``GET /api/v1/flags`` with tenant isolation. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from vendo import ConfigError, InvalidInput, NotFound, create_app
from vendo.entitlements.catalog import load_catalog, parse_catalog
from vendo.entitlements.flags import rollout_bucket

CATALOGS = Path(__file__).resolve().parents[2] / "examples" / "catalogs"

CATALOG = """
[features.chat]
kind = "metered"

[plans.free]
name = "Free"
default = true
features = { chat = 10 }

[plans.pro]
name = "Pro"
trial_days = 14
prices = [{ interval = "month", currency = "usd", amount = "10" }]
features = { chat = 100 }

[plans.business]
name = "Business"
prices = [{ interval = "month", currency = "usd", amount = "30" }]
features = { chat = 1000 }

[flags.beta-search]
description = "The new search"
rollout = { free = 0, pro = 25, business = 100 }

[flags.dark-mode]
description = "Dark mode"
default = true

[flags.free-preview]
description = "A preview for part of the free plan"
default = true
rollout = { free = 30 }
"""


def catalog(text: str = CATALOG):
    return parse_catalog(tomllib.loads(text), "flags.toml", text)


@pytest.fixture
def flagged(migrated_kernel, vendo_clock):
    kernel = migrated_kernel(clock=vendo_clock)
    kernel.providers.configure({})
    kernel.entitlements.load_catalog(catalog())
    return kernel


def on_plan(kernel, subject, plan, **options):
    with kernel.session() as session:
        kernel.entitlements.assign(session, subject, plan, **options)


# -- buckets --------------------------------------------------------------------------------------


def test_buckets_are_stable_across_processes_and_spread_evenly() -> None:
    subjects = [f"ws_{n:05d}" for n in range(10_000)]
    here = [rollout_bucket("beta-search", s) for s in subjects[:50]]
    script = ("import json; from vendo.entitlements.flags import rollout_bucket; "
              f"print(json.dumps([rollout_bucket('beta-search', s) for s in {subjects[:50]!r}]))")
    for seed in ("1", "2"):  # another interpreter, another str-hash seed: the same buckets
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60,
                             env={**os.environ, "PYTHONHASHSEED": seed})
        assert json.loads(out.stdout) == here
    assert all(0 <= b <= 99 for b in here)
    counts = [0] * 100
    for subject in subjects:
        counts[rollout_bucket("beta-search", subject)] += 1
    assert min(counts) > 50 and max(counts) < 150  # about 100 each
    in_25 = sum(c for c in counts[:25])
    assert 2300 < in_25 < 2700
    other_flag = {s for s in subjects if rollout_bucket("dark-mode", s) < 25}
    this_flag = {s for s in subjects if rollout_bucket("beta-search", s) < 25}
    assert len(other_flag & this_flag) < len(this_flag) / 2  # each flag picks its own subjects


def test_raising_a_rollout_keeps_everyone_who_had_it(flagged) -> None:
    subjects = [f"usr_{n:04d}" for n in range(150)]  # on the default (free) plan
    at_30 = {s for s in subjects if flagged.flags.enabled(s, "free-preview")}
    flagged.entitlements.load_catalog(catalog(CATALOG.replace("rollout = { free = 30 }", "rollout = { free = 60 }")))
    at_60 = {s for s in subjects if flagged.flags.enabled(s, "free-preview")}
    assert at_30 < at_60  # a strict superset: nobody lost it, more got it
    assert at_30 == {s for s in subjects if rollout_bucket("free-preview", s) < 30}
    assert 0 < len(at_30) < len(at_60) < len(subjects)
    flagged.entitlements.load_catalog(catalog(CATALOG.replace("rollout = { free = 30 }", "rollout = { free = 100 }")))
    assert all(flagged.flags.enabled(s, "free-preview") for s in subjects)


# -- plan rules ---------------------------------------------------------------------------------


def test_rollout_per_plan_and_default_elsewhere(flagged) -> None:
    free, pro, business = "ws_free", "ws_pro", "ws_business"
    on_plan(flagged, pro, "pro")
    on_plan(flagged, business, "business")
    assert not flagged.flags.enabled(free, "beta-search")  # 0 percent
    assert flagged.flags.enabled(business, "beta-search")  # 100 percent
    state = flagged.flags.evaluate(pro, "beta-search")
    assert (state.plan, state.reason, state.percent) == ("pro", "rollout", 25)
    assert state.enabled == (rollout_bucket("beta-search", pro) < 25)
    assert flagged.flags.enabled(pro, "free-preview")  # pro is not in that rollout: the default (true)
    preview = flagged.flags.evaluate(business, "free-preview")
    assert (preview.enabled, preview.reason, preview.percent) == (True, "default", None)
    assert all(flagged.flags.enabled(s, "dark-mode") for s in (free, pro, business))
    listed = flagged.flags.for_subject(business)
    assert listed["plan"] == "business"
    assert [(f["name"], f["enabled"]) for f in listed["flags"]] == [
        ("beta-search", True), ("dark-mode", True), ("free-preview", True)]


def test_the_plan_is_the_one_entitlements_give(flagged, vendo_clock) -> None:
    subject = "ws_trial"
    on_plan(flagged, subject, "business", status="trialing", trial_days=7)
    assert flagged.flags.evaluate(subject, "beta-search").plan == "business"
    assert flagged.flags.enabled(subject, "beta-search")
    vendo_clock.advance(days=7, seconds=1)  # the trial lapsed: back on the free plan
    lapsed = flagged.flags.evaluate(subject, "beta-search")
    assert (lapsed.plan, lapsed.enabled) == ("free", False)
    on_plan(flagged, subject, "business", status="past_due", grace_until=vendo_clock() + timedelta(days=3))
    assert flagged.flags.enabled(subject, "beta-search")  # still in its grace period


def test_unknown_flag_and_bad_subject(flagged) -> None:
    with pytest.raises(NotFound) as unknown:
        flagged.flags.enabled("ws_x", "teleport")
    assert (unknown.value.code, unknown.value.status_code) == ("unknown_flag", 404)
    with pytest.raises(InvalidInput) as empty:
        flagged.flags.enabled("", "dark-mode")
    assert empty.value.code == "invalid_subject"


def test_without_a_catalog(migrated_kernel) -> None:
    bare = migrated_kernel()
    bare.providers.configure({})
    with pytest.raises(NotFound) as missing:
        bare.flags.enabled("ws_x", "dark-mode")
    assert missing.value.code == "no_catalog"


# -- the catalog --------------------------------------------------------------------------------


PREVIEW = "rollout = { free = 30 }"


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (PREVIEW, "rollout = { free = 101 }", "flags.free-preview.rollout.free: Input should be less than or equal"),
        (PREVIEW, "rollout = { free = -1 }", "flags.free-preview.rollout.free: Input should be greater than or equal"),
        (PREVIEW, "rollout = { free = \"30\" }", "flags.free-preview.rollout.free: Input should be a valid integer"),
        (PREVIEW, "rollout = { gold = 30 }", "flags.free-preview.rollout.gold: unknown plan 'gold'"),
        ("default = true\nrollout", "default = \"yes\"\nrollout", "free-preview.default: Input should be a valid"),
        ("[flags.dark-mode]", "[flags.Dark_Mode]", "'Dark_Mode': ids are lowercase letters"),
        ("description = \"Dark mode\"", "description = \"Dark mode\"\nodds = 5", "dark-mode.odds: unknown"),
    ],
)
def test_invalid_flags_are_refused_with_their_field(old, new, problem) -> None:
    with pytest.raises(ConfigError) as error:
        catalog(CATALOG.replace(old, new, 1))
    assert problem in error.value.message and error.value.message.startswith("flags.toml")


def test_example_catalog_flags(flagged) -> None:
    memento = load_catalog(CATALOGS / "memento.toml")
    assert memento.flags["semantic-search-v2"].rollout == {"basic": 0, "pro": 25, "business": 100, "enterprise": 100}
    flagged.entitlements.load_catalog(memento)
    assert not flagged.flags.enabled("ws_someone", "semantic-search-v2")  # basic: 0 percent
    assert flagged.flags.enabled("ws_someone", "trial-offer-14days")  # basic: 100 percent
    assert load_catalog(CATALOGS / "gilo.toml").flags["widget-v2"].rollout["team"] == 100


# -- over HTTP ----------------------------------------------------------------------------------


@pytest.fixture
def http(flagged):
    people = {}
    with flagged.session() as session:
        for name in ("ada", "vic", "eve"):
            user = flagged.identity.create_user(session, f"{name}@example.com")
            token = flagged.sessions.issue(session, user.id, "t").access_token
            people[name] = (user.id, {"Authorization": f"Bearer {token}"})
        team = flagged.identity.create_workspace(session, people["ada"][0], "Team")
        _invitation, token = flagged.identity.invite(session, people["ada"][0], team.id, "vic@example.com", "VIEWER")
        flagged.identity.accept_invitation(session, people["vic"][0], token)
        flagged.entitlements.assign(session, team.id, "business")
    client = TestClient(create_app(flagged), raise_server_exceptions=False)
    client.__enter__()
    yield client, people, team.id
    client.__exit__(None, None, None)


def test_flags_over_http_for_members_only(http) -> None:
    client, people, team = http
    listed = client.get("/api/v1/flags", params={"subject": team}, headers=people["vic"][1])  # a VIEWER may read
    assert listed.status_code == 200
    body = listed.json()
    assert (body["subject"], body["plan"]) == (team, "business")
    assert {f["name"]: f["enabled"] for f in body["flags"]} == {"beta-search": True, "dark-mode": True,
                                                               "free-preview": True}
    one = client.get("/api/v1/flags/beta-search", params={"subject": team}, headers=people["ada"][1]).json()
    assert (one["subject"], one["name"], one["enabled"], one["reason"], one["percent"]) == (
        team, "beta-search", True, "rollout", 100)
    mine = client.get("/api/v1/flags", headers=people["eve"][1]).json()  # no subject: the caller itself
    assert (mine["subject"], mine["plan"]) == (people["eve"][0], "free")
    unknown = client.get("/api/v1/flags/teleport", params={"subject": team}, headers=people["ada"][1])
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_flag"
    for url in ("/api/v1/flags", "/api/v1/flags/beta-search", "/api/v1/flags/teleport"):
        stranger = client.get(url, params={"subject": team}, headers=people["eve"][1])
        assert stranger.status_code == 404 and stranger.json()["error"]["code"] == "subject_not_found"
    other_user = client.get("/api/v1/flags", params={"subject": people["ada"][0]}, headers=people["eve"][1])
    assert other_user.status_code == 404
    assert client.get("/api/v1/flags", params={"subject": team}).status_code == 401
