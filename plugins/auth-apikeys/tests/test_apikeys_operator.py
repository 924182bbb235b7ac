"""Operator-only rate-limit tiers and the operator's ``vendo api-keys`` commands (a real
``vendo`` process on the test's database, SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

OPERATOR_TIERS = {"rate_limit_tiers": ["standard"], "operator_rate_limit_tiers": ["partner"]}


@pytest.fixture
def operator_world(make_world) -> Any:
    return make_world(OPERATOR_TIERS)


@pytest.fixture
def vendo(operator_world, database_url: str, tmp_path) -> Any:
    """``vendo api-keys ...`` as a separate process on the world's database and master secret."""
    secret = operator_world.kernel.settings.secret_key
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_") or k.startswith("VENDO_TEST_")}
    environment.update({"VENDO_DATABASE_URL": database_url, "VENDO_SECRET_KEY": secret.get_secret_value(),
                        "VENDO_DATA_DIR": str(tmp_path / "data"), "VENDO_PLUGINS__ENABLED": '["auth-apikeys"]',
                        "VENDO_AUTH_APIKEYS__RATE_LIMIT_TIERS": json.dumps(OPERATOR_TIERS["rate_limit_tiers"]),
                        "VENDO_AUTH_APIKEYS__OPERATOR_RATE_LIMIT_TIERS": '["partner"]'})

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "vendo", "api-keys", *args], capture_output=True, text=True,
                              env=environment, cwd=tmp_path, timeout=120)

    return run


def tier_of(world: Any, key: str) -> str:
    response = world.client.get("/api/v1/me", headers=world.bearer(key))
    assert response.status_code == 200, response.text
    with world.kernel.session() as session:
        from vendo_auth_apikeys.models import ApiKey

        return session.get(ApiKey, key[8:20]).rate_limit_tier


def one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and fragment in lines[0], result.stderr


def test_workspace_admins_cannot_pick_an_operator_tier(operator_world) -> None:
    w = operator_world
    refused = w.client.post(w.keys_url(), json={"name": "mine", "scopes": [], "rate_limit_tier": "partner"},
                            headers=w.headers(w.admin))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "operator_rate_limit_tier"
    assert w.create_key(rate_limit_tier="standard")["rate_limit_tier"] == "standard"


def test_the_operator_sets_a_tier_that_survives_rotation(operator_world, vendo) -> None:
    w = operator_world
    created = w.create_key(name="Partner integration")
    done = vendo("set-tier", created["id"], "partner")
    assert done.returncode == 0, done.stderr
    assert f"{created['id']} of workspace {w.team}: rate-limit tier partner" in done.stdout
    assert tier_of(w, created["key"]) == "partner"
    rotated = w.client.post(w.keys_url(None, created["id"], "rotate"), headers=w.headers(w.admin))
    assert rotated.status_code == 201 and rotated.json()["rate_limit_tier"] == "partner"
    audit = w.client.get(f"/api/v1/workspaces/{w.team}/audit", headers=w.headers(w.owner)).json()["data"]
    [change] = [e for e in audit if e["action"] == "api_key.tier_changed"]
    assert change["details"]["from"] == "standard" and change["details"]["to"] == "partner"


def test_the_operator_revokes_a_leaked_key_by_the_key_itself(operator_world, vendo) -> None:
    w = operator_world
    created = w.create_key(name="Leaked")
    listed = vendo("list", "--workspace", w.team)
    assert listed.returncode == 0 and created["key"][:20] in listed.stdout and created["key"] not in listed.stdout
    done = vendo("revoke", created["key"])
    assert done.returncode == 0 and "revoked" in done.stdout, done.stderr
    assert w.client.get("/api/v1/me", headers=w.bearer(created["key"])).status_code == 401
    assert "already revoked" in vendo("revoke", created["id"]).stdout


def test_operator_mistakes_are_one_line(operator_world, vendo) -> None:
    w = operator_world
    created = w.create_key()
    one_line_error(vendo("revoke", "vk_live_nosuchkey000"), "no API key")
    one_line_error(vendo("set-tier", created["id"], "gold"), "unknown rate_limit_tier")
