"""Entitlements over HTTP, `require_feature` for integrators' routes, and `vendo plans`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient

from vendo import create_app, hookimpl, require_feature
from vendo.entitlements.catalog import load_catalog

CATALOGS = Path(__file__).resolve().parents[2] / "examples" / "catalogs"


class Summaries:
    """An integrator's route gated by a metered feature."""

    def __init__(self) -> None:
        self.fail = False

    @hookimpl
    def vendo_register_routes(self, register):
        router = APIRouter()

        @router.post("/workspaces/{workspace_id}/summaries")
        def summarise(workspace_id: str, decision=Depends(require_feature("notebook_summary"))) -> dict:
            if self.fail:
                raise RuntimeError("model server down")
            return {"remaining": decision.remaining}

        register(router)


@pytest.fixture
def app(migrated_kernel, vendo_clock):
    kernel = migrated_kernel({"summaries": Summaries()}, clock=vendo_clock)
    kernel.providers.configure({})
    kernel.entitlements.load_catalog(load_catalog(CATALOGS / "memento.toml"))
    people = {}
    with kernel.session() as session:
        for name in ("ada", "vic", "eve"):
            user = kernel.identity.create_user(session, f"{name}@example.com")
            people[name] = (user.id, {"Authorization": f"Bearer {kernel.sessions.issue(session, user.id, 't').access_token}"})
        team = kernel.identity.create_workspace(session, people["ada"][0], "Team")
        _inv, token = kernel.identity.invite(session, people["ada"][0], team.id, "vic@example.com", "VIEWER")
        kernel.identity.accept_invitation(session, people["vic"][0], token)
        kernel.entitlements.assign(session, team.id, "business")
    client = TestClient(create_app(kernel), raise_server_exceptions=False)
    client.__enter__()
    yield kernel, client, people, team.id
    client.__exit__(None, None, None)


def test_check_then_consume_until_429_with_retry_after(app) -> None:
    _kernel, client, people, team = app
    headers = people["ada"][1]
    body = {"feature": "notebook_summary", "subject": team}
    check = client.post("/api/v1/check", json=body, headers=headers).json()
    assert (check["allowed"], check["limit"], check["remaining"]) == (True, 50, 50)
    assert client.post("/api/v1/consume", json={**body, "amount": 50}, headers=headers).status_code == 200
    refused = client.post("/api/v1/consume", json=body, headers=headers)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "WORKSPACE_QUOTA_EXHAUSTED" and error["details"]["upgrade_tier"] == "enterprise"
    assert int(refused.headers["retry-after"]) > 0


def test_tier_limited_is_402(app) -> None:
    kernel, client, people, _team = app
    personal = client.get("/api/v1/me", headers=people["eve"][1]).json()["workspaces"][0]["id"]
    refused = client.post("/api/v1/consume", json={"feature": "chat", "subject": personal}, headers=people["eve"][1])
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "TIER_LIMITED" and "retry-after" not in refused.headers


def test_idempotency_and_refund_over_http(app) -> None:
    _kernel, client, people, team = app
    headers = people["ada"][1]
    body = {"feature": "chat", "subject": team, "amount": 2, "idempotency_key": "r1"}
    assert client.post("/api/v1/consume", json=body, headers=headers).json()["used"] == 2
    assert client.post("/api/v1/consume", json=body, headers=headers).json()["replayed"] is True
    conflict = client.post("/api/v1/consume", json={**body, "amount": 3}, headers=headers)
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_conflict"
    assert client.post("/api/v1/refund", json={"idempotency_key": "r1", "subject": team},
                       headers=headers).json()["refunded"] == 2
    twice = client.post("/api/v1/refund", json={"idempotency_key": "r1", "subject": team}, headers=headers)
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "already_refunded"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"feature": "teleport"}, 404, "unknown_feature"),
        ({"feature": "chat", "amount": 0}, 422, "validation_error"),
        ({"feature": "chat", "amount": -3}, 422, "validation_error"),
    ],
)
def test_bad_input(app, body, status, code) -> None:
    _kernel, client, people, team = app
    response = client.post("/api/v1/consume", json={**body, "subject": team}, headers=people["ada"][1])
    assert response.status_code == status and response.json()["error"]["code"] == code


def test_subjects_are_isolated_and_viewers_cannot_consume(app) -> None:
    _kernel, client, people, team = app
    stranger = client.post("/api/v1/check", json={"feature": "chat", "subject": team}, headers=people["eve"][1])
    assert stranger.status_code == 404 and stranger.json()["error"]["code"] == "subject_not_found"
    viewer_check = client.post("/api/v1/check", json={"feature": "chat", "subject": team}, headers=people["vic"][1])
    assert viewer_check.status_code == 200
    viewer = client.post("/api/v1/consume", json={"feature": "chat", "subject": team}, headers=people["vic"][1])
    assert viewer.status_code == 403 and viewer.json()["error"]["code"] == "insufficient_role"
    other_user = client.get("/api/v1/usage/current", params={"subject": people["ada"][0]}, headers=people["eve"][1])
    assert other_user.status_code == 404


def test_entitlements_usage_and_history(app) -> None:
    _kernel, client, people, team = app
    headers = people["ada"][1]
    client.post("/api/v1/track", json={"feature": "chat", "subject": team, "amount": 850, "tokens": 4000},
                headers=headers)
    granted = client.get("/api/v1/entitlements", params={"subject": team}, headers=headers).json()
    assert granted["plan"] == "business" and granted["features"]["api_access"]["enabled"] is True
    meters = {m["feature"]: m for m in client.get("/api/v1/usage/current", params={"subject": team},
                                                  headers=headers).json()["meters"]}
    assert meters["chat"]["used"] == 850 and meters["chat"]["warning"] is True
    history = client.get("/api/v1/usage/history", params={"subject": team, "feature": "chat"}, headers=headers)
    assert history.json()["data"][0]["tokens"] == 4000


def test_require_feature_consumes_and_refunds_on_failure(app) -> None:
    kernel, client, people, team = app
    plugin = kernel.pm.get_plugin("summaries")
    url = f"/api/v1/workspaces/{team}/summaries"
    assert client.post(url, headers=people["ada"][1]).json() == {"remaining": 49}
    plugin.fail = True
    assert client.post(url, headers=people["ada"][1]).status_code == 500
    assert kernel.entitlements.check(team, "notebook_summary").used == 1  # the failed call was refunded
    plugin.fail = False
    retried = [client.post(url, headers={**people["ada"][1], "Idempotency-Key": "sum-7"}) for _ in range(3)]
    assert [r.status_code for r in retried] == [200, 200, 200]
    assert kernel.entitlements.check(team, "notebook_summary").used == 2  # one retry key, one unit
    assert client.post(url, headers=people["vic"][1]).status_code == 403
    assert client.post(url, headers=people["eve"][1]).status_code == 404


def _vendo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vendo", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_plans_cli(tmp_path: Path) -> None:
    assert _vendo("db", "upgrade", cwd=tmp_path).returncode == 0
    loaded = _vendo("plans", "load", str(CATALOGS / "memento.toml"), cwd=tmp_path)
    assert loaded.returncode == 0 and "loaded as catalog version 1: 4 plans" in loaded.stdout
    assert "unchanged: catalog version 1" in _vendo("plans", "load", str(CATALOGS / "memento.toml"), cwd=tmp_path).stdout
    shown = _vendo("plans", "show", cwd=tmp_path).stdout
    assert "pro: Pro - 9.90 EUR/month" in shown and "semantic_search: 30 per lifetime" in shown
    assert "semantic_search: 1000 per month (at most 300 per member)" in shown
    bad = tmp_path / "bad.toml"
    bad.write_text((CATALOGS / "memento.toml").read_text().replace("chat = 100\n", "chat = \"lots\"\n"))
    refused = _vendo("plans", "load", str(bad), cwd=tmp_path)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"{bad}:" in refused.stderr and "plans.pro.features.chat.limit" in refused.stderr
    assert "pro: Pro" in _vendo("plans", "show", cwd=tmp_path).stdout  # catalog unchanged
    assigned = _vendo("plans", "assign", "ws_demo", "pro", "--trial", cwd=tmp_path)
    assert assigned.returncode == 0 and "ws_demo is on pro (trialing)" in assigned.stdout
    unknown = _vendo("plans", "assign", "ws_demo", "platinum", cwd=tmp_path)
    assert unknown.returncode == 1 and "unknown plan 'platinum'" in unknown.stderr
