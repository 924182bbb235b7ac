"""API keys over real HTTP: create, use, list, rotate, revoke, expire, on SQLite and PostgreSQL.

Every test drives ``TestClient(vendo.create_app(kernel))`` with users signed in through
``kernel.sessions.issue`` and a frozen clock (``vendo_sdk.pytest_plugin.FrozenClock``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event

from vendo import hookimpl

INVALID = {"code": "invalid_api_key", "message": "invalid API key", "details": {}}


class Echo:
    """An integrator's plugin: one route echoing the principal, one needing a scope."""

    @hookimpl
    def vendo_register_routes(self, register: Any) -> None:
        from fastapi import APIRouter, Depends

        from vendo import Principal, current_principal, require_scope

        router = APIRouter(prefix="/echo")

        @router.get("/principal")
        def principal(principal: Principal = Depends(current_principal)) -> dict[str, Any]:
            return {"subject": principal.subject, "workspace": principal.workspace,
                    "scopes": sorted(principal.scopes), "method": principal.method,
                    "credential": principal.credential, "attributes": dict(principal.attributes)}

        @router.get("/notes", dependencies=[Depends(require_scope("notes:write"))])
        def notes() -> dict[str, bool]:
            return {"ok": True}

        register(router)


def error_of(response: Any) -> dict[str, Any]:
    """The error body without its request id (which differs on every request)."""
    return {k: v for k, v in response.json()["error"].items() if k != "request_id"}


def assert_refused(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert error_of(response) == INVALID
    assert response.headers["www-authenticate"] == "Bearer"


def listed(world: Any, workspace: str | None = None, user: Any = None) -> dict[str, dict[str, Any]]:
    response = world.client.get(world.keys_url(workspace), headers=world.headers(user or world.admin))
    assert response.status_code == 200, response.text
    return {item["id"]: item for item in response.json()["data"]}


def test_create_use_list_rotate_revoke(world, clock) -> None:
    w = world
    created = w.create_key(name="CI deploys", scopes=["notes:read", "notes:write"])
    key = created["key"]
    assert key.startswith("vk_live_") and len(key) == 52
    assert created["prefix"] == key[:20] + "\u2026" and created["id"] == key[8:20]
    assert created["status"] == "active" and created["scopes"] == ["notes:read", "notes:write"]
    assert created["created_by"] == w.admin.id and created["rate_limit_tier"] == "standard"

    me = w.client.get("/api/v1/me", headers=w.bearer(key))
    assert me.status_code == 200 and me.json()["id"] == w.admin.id and me.json()["method"] == "api_key"
    workspaces = w.client.get("/api/v1/workspaces", headers={"X-API-Key": key})
    assert workspaces.status_code == 200
    assert [item["id"] for item in workspaces.json()["data"]] == [w.team]  # not the admin's personal one

    response = w.client.get(w.keys_url(), headers=w.headers(w.admin))
    assert response.status_code == 200 and key[20:] not in response.text and "secret" not in response.text
    [item] = response.json()["data"]
    assert "key" not in item and item["prefix"] == created["prefix"] and item["last_used_at"] is not None
    assert set(item) >= {"id", "name", "prefix", "scopes", "created_at", "expires_at", "last_used_at",
                         "revoked_at", "rotated", "status"}
    assert w.client.get(w.keys_url(None, created["id"]), headers=w.headers(w.admin)).json()["name"] == "CI deploys"

    clock.advance(minutes=5)
    rotated = w.client.post(w.keys_url(None, created["id"], "rotate"), json={"grace_seconds": 3600},
                            headers=w.headers(w.admin))
    assert rotated.status_code == 201, rotated.text
    body = rotated.json()
    new_key = body["key"]
    assert new_key != key and new_key.startswith("vk_live_") and body["rotated_from"] == created["id"]
    assert body["scopes"] == created["scopes"] and body["name"] == "CI deploys"
    assert body["previous"]["status"] == "rotating" and body["previous"]["replaced_by"] == body["id"]
    assert "key" not in body["previous"]

    clock.advance(seconds=3599)  # the old key works until the grace window ends...
    assert w.client.get("/api/v1/me", headers=w.bearer(key)).status_code == 200
    assert w.client.get("/api/v1/me", headers=w.bearer(new_key)).status_code == 200
    clock.advance(seconds=1)  # ...then fails, with the one answer
    assert_refused(w.client.get("/api/v1/me", headers=w.bearer(key)))
    assert w.client.get("/api/v1/me", headers=w.bearer(new_key)).status_code == 200
    keys = listed(w)
    assert keys[created["id"]]["status"] == "rotated" and keys[created["id"]]["rotated"] is True
    assert keys[body["id"]]["status"] == "active"

    revoked = w.client.delete(w.keys_url(None, body["id"]), headers=w.headers(w.admin))
    assert revoked.status_code == 204
    assert_refused(w.client.get("/api/v1/me", headers=w.bearer(new_key)))
    assert_refused(w.client.get("/api/v1/workspaces", headers={"X-API-Key": new_key}))
    assert listed(w)[body["id"]]["status"] == "revoked"
    assert w.client.delete(w.keys_url(None, body["id"]), headers=w.headers(w.admin)).status_code == 204  # idempotent
    active = w.client.get(w.keys_url() + "?include_revoked=false", headers=w.headers(w.admin)).json()["data"]
    assert [item["id"] for item in active] == [created["id"]]


def test_principal_carries_creator_workspace_scopes_and_attributes(make_world) -> None:
    w = make_world({"rate_limit_tiers": ["standard", "batch"]}, plugins={"echo": Echo()})
    created = w.create_key(scopes=["notes:read"], rate_limit_tier="batch")
    principal = w.client.get("/api/v1/echo/principal", headers=w.bearer(created["key"])).json()
    assert principal == {
        "subject": w.admin.id, "workspace": w.team, "scopes": ["notes:read"], "method": "api_key",
        "credential": created["id"],
        "attributes": {"rate_limit_tier": "batch", "key_prefix": created["prefix"], "environment": "live"},
    }
    refused = w.client.get("/api/v1/echo/notes", headers=w.bearer(created["key"]))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "missing_scope"
    writer = w.create_key(scopes=["notes:write"])
    assert w.client.get("/api/v1/echo/notes", headers={"X-API-Key": writer["key"]}).json() == {"ok": True}
    # Kernel routes apply the key's scopes and its creator's role too.
    rename = w.client.patch(f"/api/v1/workspaces/{w.team}", json={"name": "Renamed"}, headers=w.bearer(writer["key"]))
    assert rename.status_code == 403 and rename.json()["error"]["code"] == "missing_scope"


def test_refused_keys_all_get_the_same_answer(world, clock) -> None:
    w = world
    revoked = w.create_key()
    w.client.delete(w.keys_url(None, revoked["id"]), headers=w.headers(w.admin))
    expired = w.create_key(expires_at=(clock.now + timedelta(minutes=1)).isoformat())
    retired = w.create_key()
    w.client.post(w.keys_url(None, retired["id"], "rotate"), json={"grace_seconds": 0}, headers=w.headers(w.admin))
    good = w.create_key()["key"]
    clock.advance(minutes=2)
    other_secret = good[:20] + ("A" if good[20] != "A" else "B") + good[21:]
    candidates = {
        "malformed": "vk_live_nonsense",
        "unknown environment": "vk_prod_" + good[8:],
        "other environment": "vk_test_" + good[8:],
        "unknown id": "vk_live_zzzzzzzzzzzz" + good[20:],
        "wrong secret": other_secret,
        "revoked": revoked["key"],
        "expired": expired["key"],
        "rotated, no grace": retired["key"],
    }
    for reason, candidate in candidates.items():
        for headers in (w.bearer(candidate), {"X-API-Key": candidate}):
            response = w.client.get("/api/v1/me", headers=headers)
            assert response.status_code == 401, reason
            assert error_of(response) == INVALID, reason
    assert_refused(w.client.get("/api/v1/me", headers={**w.bearer(good), "X-API-Key": other_secret}))
    assert w.client.get("/api/v1/me", headers={**w.bearer(good), "X-API-Key": good}).status_code == 200


def test_other_credentials_pass_through_the_chain(world) -> None:
    w = world
    assert w.client.get("/api/v1/me", headers=w.headers(w.member)).json()["method"] == "session:test"
    anonymous = w.client.get("/api/v1/me", headers={"X-API-Key": "not-ours"})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "authentication_required"


def test_expiry(world, clock) -> None:
    w = world
    expires = clock.now + timedelta(hours=1)
    created = w.create_key(expires_at=expires.isoformat())
    assert created["expires_at"] == expires.isoformat()
    clock.advance(minutes=59, seconds=59)
    assert w.client.get("/api/v1/me", headers=w.bearer(created["key"])).status_code == 200
    clock.advance(seconds=1)
    assert_refused(w.client.get("/api/v1/me", headers=w.bearer(created["key"])))
    assert listed(w)[created["id"]]["status"] == "expired"
    rotate = w.client.post(w.keys_url(None, created["id"], "rotate"), headers=w.headers(w.admin))
    assert rotate.status_code == 409 and rotate.json()["error"]["code"] == "api_key_expired"

    for value in ((clock.now - timedelta(seconds=1)).isoformat(), "2030-01-01T00:00:00"):
        refused = w.client.post(w.keys_url(), json={"name": "x", "scopes": [], "expires_at": value},
                                headers=w.headers(w.admin))
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_expiry", value


def test_rotation_grace_never_outlives_the_key_and_defaults_to_the_setting(make_world, clock) -> None:
    w = make_world({"default_grace_seconds": 600, "max_grace_seconds": 3600})
    short = w.create_key(expires_at=(clock.now + timedelta(minutes=5)).isoformat())
    body = w.client.post(w.keys_url(None, short["id"], "rotate"), json={"grace_seconds": 3600},
                         headers=w.headers(w.admin)).json()
    assert body["previous"]["grace_until"] == short["expires_at"] and body["expires_at"] == short["expires_at"]

    plain = w.create_key()
    rotated = w.client.post(w.keys_url(None, plain["id"], "rotate"), headers=w.headers(w.admin))  # no body
    assert rotated.status_code == 201
    assert rotated.json()["previous"]["grace_until"] == (clock.now + timedelta(seconds=600)).isoformat()
    too_long = w.client.post(w.keys_url(None, rotated.json()["id"], "rotate"), json={"grace_seconds": 3601},
                             headers=w.headers(w.admin))
    assert too_long.status_code == 422 and too_long.json()["error"]["code"] == "invalid_grace_seconds"
    negative = w.client.post(w.keys_url(None, rotated.json()["id"], "rotate"), json={"grace_seconds": -1},
                             headers=w.headers(w.admin))
    assert negative.status_code == 422 and negative.json()["error"]["code"] == "validation_error"


def test_a_key_rotates_once_and_revoked_keys_do_not_rotate(world) -> None:
    w = world
    created = w.create_key()
    first = w.client.post(w.keys_url(None, created["id"], "rotate"), headers=w.headers(w.admin))
    again = w.client.post(w.keys_url(None, created["id"], "rotate"), headers=w.headers(w.admin))
    assert again.status_code == 409 and again.json()["error"]["code"] == "api_key_already_rotated"
    assert again.json()["error"]["details"] == {"replaced_by": first.json()["id"]}
    w.client.delete(w.keys_url(None, first.json()["id"]), headers=w.headers(w.admin))
    revoked = w.client.post(w.keys_url(None, first.json()["id"], "rotate"), headers=w.headers(w.admin))
    assert revoked.status_code == 409 and revoked.json()["error"]["code"] == "api_key_revoked"
    # The predecessor, still in its grace window, works until revoked itself.
    assert w.client.get("/api/v1/me", headers=w.bearer(created["key"])).status_code == 200
    w.client.delete(w.keys_url(None, created["id"]), headers=w.headers(w.admin))
    assert_refused(w.client.get("/api/v1/me", headers=w.bearer(created["key"])))
    assert len(listed(w)) == 2  # a refused rotation wrote nothing


def test_rotating_someone_elses_key_gives_the_new_key_to_the_rotator(world) -> None:
    w = world
    owners = w.create_key(user=w.owner, scopes=["notes:read"])
    rotated = w.client.post(w.keys_url(None, owners["id"], "rotate"), headers=w.headers(w.admin)).json()
    assert owners["created_by"] == w.owner.id and rotated["created_by"] == w.admin.id
    me = w.client.get("/api/v1/me", headers=w.bearer(rotated["key"])).json()
    assert me["id"] == w.admin.id  # the admin never holds a credential acting as the owner


def test_last_used_at_is_written_at_most_once_a_minute(world, clock) -> None:
    w = world
    created = w.create_key()
    assert created["last_used_at"] is None
    writes: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE AUTH_APIKEYS_KEYS"):
            writes.append(statement)

    event.listen(w.kernel.engine, "before_cursor_execute", count)
    try:
        start = clock.now
        for _ in range(10):
            assert w.client.get("/api/v1/workspaces", headers=w.bearer(created["key"])).status_code == 200
            clock.advance(seconds=5)  # 10 requests over 50 s: one write
        assert len(writes) == 1
        assert listed(w)[created["id"]]["last_used_at"] == start.isoformat()
        clock.advance(seconds=10)  # 60 s after the first use: written again
        assert w.client.get("/api/v1/workspaces", headers=w.bearer(created["key"])).status_code == 200
        assert len(writes) == 2
        assert listed(w)[created["id"]]["last_used_at"] == clock.now.isoformat()
    finally:
        event.remove(w.kernel.engine, "before_cursor_execute", count)


def test_last_used_resolution_is_a_setting(make_world, clock) -> None:
    w = make_world({"last_used_resolution_seconds": 1})
    created = w.create_key()
    w.client.get("/api/v1/me", headers=w.bearer(created["key"]))
    clock.advance(seconds=1)
    w.client.get("/api/v1/me", headers=w.bearer(created["key"]))
    assert listed(w)[created["id"]]["last_used_at"] == clock.now.isoformat()


def test_scopes_wildcard_and_grantable_list(make_world) -> None:
    w = make_world()
    wildcard = w.client.post(w.keys_url(), json={"name": "all", "scopes": ["*"]}, headers=w.headers(w.admin))
    assert wildcard.status_code == 422 and wildcard.json()["error"]["code"] == "scope_not_grantable"
    for bad in (["has space"], [""], ["x" * 101], ["-leading"]):
        response = w.client.post(w.keys_url(), json={"name": "bad", "scopes": bad}, headers=w.headers(w.admin))
        assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_scopes", bad
    deduped = w.create_key(scopes=["a:read", "b/c.d-e_f", "a:read"])
    assert deduped["scopes"] == ["a:read", "b/c.d-e_f"]
    assert w.create_key(scopes=[])["scopes"] == []

    permissive = make_world({"allow_wildcard_scope": True})
    key = permissive.create_key(scopes=["*"])
    rename = permissive.client.patch(f"/api/v1/workspaces/{permissive.team}", json={"name": "Renamed"},
                                     headers=permissive.bearer(key["key"]))
    assert rename.status_code == 200  # '*' and an ADMIN creator: everything an admin may do

    strict = make_world({"grantable_scopes": ["notes:read", "notes:write"], "max_scopes": 2})
    assert strict.create_key(scopes=["notes:read"])["scopes"] == ["notes:read"]
    refused = strict.client.post(strict.keys_url(), json={"name": "x", "scopes": ["billing:manage"]},
                                 headers=strict.headers(strict.admin))
    assert refused.status_code == 422 and refused.json()["error"]["details"]["scopes"] == ["billing:manage"]
    too_many = strict.client.post(strict.keys_url(), json={"name": "x", "scopes": ["a", "b", "c"]},
                                  headers=strict.headers(strict.admin))
    assert too_many.status_code == 422 and too_many.json()["error"]["code"] == "invalid_scopes"


def test_environments(make_world, make_kernel) -> None:
    w = make_world({"environment": "test"})
    default = w.create_key()
    assert default["key"].startswith("vk_test_") and default["environment"] == "test"
    live = w.create_key(environment="live")
    assert live["key"].startswith("vk_live_") and live["prefix"].startswith("vk_live_")
    bad = w.client.post(w.keys_url(), json={"name": "x", "scopes": [], "environment": "prod"},
                        headers=w.headers(w.admin))
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"

    # A staging deployment on the same database accepts only test keys.
    from fastapi.testclient import TestClient

    from vendo import create_app

    staging_kernel = make_kernel({"environment": "test", "accepted_environments": ["test"]})
    with TestClient(create_app(staging_kernel)) as staging:
        assert staging.get("/api/v1/me", headers=w.bearer(default["key"])).status_code == 200
        assert_refused(staging.get("/api/v1/me", headers=w.bearer(live["key"])))
        refused = staging.post(w.keys_url(), json={"name": "x", "scopes": [], "environment": "live"},
                               headers=w.headers(w.admin))
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "environment_not_accepted"


def test_rate_limit_tiers_are_validated(make_world) -> None:
    w = make_world({"rate_limit_tiers": ["standard", "batch"], "default_rate_limit_tier": "batch"})
    assert w.create_key()["rate_limit_tier"] == "batch"
    assert w.create_key(rate_limit_tier="standard")["rate_limit_tier"] == "standard"
    refused = w.client.post(w.keys_url(), json={"name": "x", "scopes": [], "rate_limit_tier": "unlimited"},
                            headers=w.headers(w.admin))
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_rate_limit_tier"
    assert refused.json()["error"]["details"] == {"tiers": ["standard", "batch"]}


@pytest.mark.parametrize(("body", "code"), [
    ({"name": "", "scopes": []}, "validation_error"),
    ({"name": "   ", "scopes": []}, "invalid_name"),
    ({"name": "tab\there", "scopes": []}, "invalid_name"),
    ({"name": "x" * 101, "scopes": []}, "validation_error"),
    ({"name": "x"}, "validation_error"),
    ({"name": "x", "scopes": "notes:read"}, "validation_error"),
    ({"name": "x", "scopes": [], "owner": "someone"}, "validation_error"),
])
def test_malformed_bodies_are_refused(world, body, code) -> None:
    response = world.client.post(world.keys_url(), json=body, headers=world.headers(world.admin))
    assert response.status_code == 422 and response.json()["error"]["code"] == code
    assert listed(world) == {}


def test_usable_keys_per_workspace_are_limited(make_world) -> None:
    w = make_world({"max_keys_per_workspace": 2})
    first = w.create_key()
    second = w.create_key()

    def refused() -> bool:
        response = w.client.post(w.keys_url(), json={"name": "x", "scopes": []}, headers=w.headers(w.admin))
        return response.status_code == 409 and response.json()["error"]["code"] == "too_many_api_keys"

    assert refused()
    # Rotating is allowed at the limit (it replaces a key); the predecessor counts while it works.
    assert w.client.post(w.keys_url(None, first["id"], "rotate"), headers=w.headers(w.admin)).status_code == 201
    w.client.delete(w.keys_url(None, first["id"]), headers=w.headers(w.admin))
    assert refused()
    w.client.delete(w.keys_url(None, second["id"]), headers=w.headers(w.admin))
    assert w.create_key()["status"] == "active"


def test_a_key_with_api_keys_manage_manages_keys_of_its_workspace_only(world) -> None:
    w = world
    manager = w.create_key(scopes=["api_keys:manage", "notes:read"])["key"]
    reader = w.create_key(scopes=["notes:read"])["key"]
    forbidden = w.client.get(w.keys_url(), headers=w.bearer(reader))
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "missing_scope"

    assert w.client.get(w.keys_url(), headers=w.bearer(manager)).status_code == 200
    child = w.client.post(w.keys_url(), json={"name": "child", "scopes": ["notes:read"]}, headers=w.bearer(manager))
    assert child.status_code == 201 and child.json()["created_by"] == w.admin.id
    escalation = w.client.post(w.keys_url(), json={"name": "x", "scopes": ["notes:write"]}, headers=w.bearer(manager))
    assert escalation.status_code == 403 and escalation.json()["error"]["code"] == "scope_not_held"
    assert escalation.json()["error"]["details"] == {"scopes": ["notes:write"]}

    broad = w.create_key(scopes=["notes:write"])
    rotate = w.client.post(w.keys_url(None, broad["id"], "rotate"), headers=w.bearer(manager))
    assert rotate.status_code == 403 and rotate.json()["error"]["code"] == "scope_not_held"
    assert w.client.get("/api/v1/me", headers=w.bearer(broad["key"])).status_code == 200  # untouched

    [entry] = [e for e in w.kernel.audit.query(w.team, action="api_key.created") if e["target_id"] == child.json()["id"]]
    assert entry["details"]["via"] == "api_key" and entry["details"]["via_key_id"] == manager[8:20]


def test_a_departed_creators_keys_stop_working(world) -> None:
    w = world
    created = w.create_key(user=w.admin)
    removed = w.client.delete(f"/api/v1/workspaces/{w.team}/members/{w.admin.id}", headers=w.headers(w.owner))
    assert removed.status_code == 204
    assert_refused(w.client.get("/api/v1/me", headers=w.bearer(created["key"])))
    item = listed(w, user=w.owner)[created["id"]]
    assert item["creator_is_member"] is False and item["status"] == "active"
    assert w.client.get(w.keys_url(None, created["id"]), headers=w.headers(w.owner)).json()["creator_is_member"] is False


def test_audit_entries_for_create_rotate_revoke(world) -> None:
    w = world
    created = w.create_key(name="Deploys", scopes=["deploys:write"])
    rotated = w.client.post(w.keys_url(None, created["id"], "rotate"), json={"grace_seconds": 60},
                            headers=w.headers(w.owner)).json()
    w.client.delete(w.keys_url(None, rotated["id"]), headers=w.headers(w.admin))
    response = w.client.get(f"/api/v1/workspaces/{w.team}/audit?action=api_key", headers=w.headers(w.owner))
    entries = {entry["action"]: entry for entry in response.json()["data"]}
    assert set(entries) == {"api_key.created", "api_key.rotated", "api_key.revoked"}
    assert entries["api_key.created"]["actor_id"] == w.admin.id
    assert entries["api_key.created"]["target_id"] == created["id"]
    assert entries["api_key.created"]["details"]["scopes"] == ["deploys:write"]
    assert entries["api_key.rotated"]["actor_id"] == w.owner.id
    assert entries["api_key.rotated"]["details"]["new_key_id"] == rotated["id"]
    assert entries["api_key.rotated"]["details"]["grace_seconds"] == 60
    assert entries["api_key.revoked"]["target_id"] == rotated["id"]
    assert all(entry["request_id"] for entry in entries.values())
