"""Who may manage keys, and workspace isolation on every route (SQLite and PostgreSQL).

Managing keys needs ``api_keys.manage`` (ADMIN and OWNER); MEMBER and VIEWER get 403, a
non-member 404. A key of workspace A is never visible, rotatable or revocable from
workspace B, and an API key of A never reaches B's routes.
"""

from __future__ import annotations

from typing import Any

import pytest


def routes(world: Any, workspace: str, key_id: str) -> list[tuple[str, str, Any]]:
    """Every route of the plugin as (method, url, json body) for ``key_id`` in ``workspace``."""
    url = world.keys_url(workspace)
    return [
        ("POST", url, {"name": "probe", "scopes": []}),
        ("GET", url, None),
        ("GET", f"{url}/{key_id}", None),
        ("POST", f"{url}/{key_id}/rotate", {"grace_seconds": 0}),
        ("DELETE", f"{url}/{key_id}", None),
    ]


def call(world: Any, method: str, url: str, body: Any, headers: dict[str, str]) -> Any:
    return world.client.request(method, url, json=body, headers=headers)


def assert_untouched(world: Any, key: dict[str, Any], workspace: str, owner: Any) -> None:
    """The key still works and still is the only one of its workspace's keys changed by nobody."""
    assert world.client.get("/api/v1/me", headers=world.bearer(key["key"])).status_code == 200
    response = world.client.get(world.keys_url(workspace, key["id"]), headers=world.headers(owner))
    assert response.status_code == 200 and response.json()["status"] == "active"


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_cannot_manage_keys(world, role) -> None:
    w = world
    key = w.create_key()
    user = getattr(w, role)
    for method, url, body in routes(w, w.team, key["id"]):
        response = call(w, method, url, body, w.headers(user))
        assert response.status_code == 403, (method, url, response.text)
        error = response.json()["error"]
        assert error["code"] == "insufficient_role" and error["details"]["permission"] == "api_keys.manage"
    assert_untouched(w, key, w.team, w.admin)
    assert len(w.client.get(w.keys_url(), headers=w.headers(w.admin)).json()["data"]) == 1


def test_a_non_member_gets_404_and_anonymous_callers_401(world) -> None:
    w = world
    key = w.create_key()
    for method, url, body in routes(w, w.team, key["id"]):
        response = call(w, method, url, body, w.headers(w.outsider))
        assert response.status_code == 404 and response.json()["error"]["code"] == "workspace_not_found", url
        anonymous = call(w, method, url, body, {})
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "authentication_required"
    assert_untouched(w, key, w.team, w.admin)


def test_owners_and_admins_manage_keys(world) -> None:
    w = world
    for user in (w.owner, w.admin):
        key = w.create_key(user=user)
        for method, url, body in routes(w, w.team, key["id"]):
            response = call(w, method, url, body, w.headers(user))
            assert response.status_code in (200, 201, 204), (method, url, response.text)


def test_a_key_of_workspace_a_is_invisible_from_workspace_b(world) -> None:
    """An admin of both teams, managing team A's keys, never reaches team B's key through A's URLs."""
    w = world
    with w.kernel.session() as session:
        _invitation, token = w.kernel.identity.invite(session, w.outsider.id, w.other, w.admin.email, "ADMIN")
        w.kernel.identity.accept_invitation(session, w.admin.id, token)
    theirs = w.create_key(user=w.outsider, workspace=w.other)
    ours = w.create_key(user=w.admin, workspace=w.team)
    for method, url, body in routes(w, w.team, theirs["id"])[2:]:  # get, rotate, revoke
        response = call(w, method, url, body, w.headers(w.admin))
        assert response.status_code == 404 and response.json()["error"]["code"] == "api_key_not_found", url
    listing = w.client.get(w.keys_url(w.team), headers=w.headers(w.admin)).json()["data"]
    assert [item["id"] for item in listing] == [ours["id"]]
    assert_untouched(w, theirs, w.other, w.outsider)
    # The same admin reaches B's key through B's URL: the 404 above was isolation, not absence.
    assert w.client.get(w.keys_url(w.other, theirs["id"]), headers=w.headers(w.admin)).status_code == 200


def test_an_api_key_never_reaches_another_workspace(world) -> None:
    """Even when its creator is an admin of both workspaces and the key may manage keys."""
    w = world
    with w.kernel.session() as session:
        _invitation, token = w.kernel.identity.invite(session, w.outsider.id, w.other, w.admin.email, "ADMIN")
        w.kernel.identity.accept_invitation(session, w.admin.id, token)
    manager = w.create_key(user=w.admin, workspace=w.team, scopes=["api_keys:manage"])
    theirs = w.create_key(user=w.outsider, workspace=w.other)
    for method, url, body in routes(w, w.other, theirs["id"]):
        for headers in (w.bearer(manager["key"]), {"X-API-Key": manager["key"]}):
            response = call(w, method, url, body, headers)
            assert response.status_code == 404 and response.json()["error"]["code"] == "workspace_not_found", url
    assert w.client.get(f"/api/v1/workspaces/{w.other}", headers=w.bearer(manager["key"])).status_code == 404
    assert_untouched(w, theirs, w.other, w.outsider)
    assert len(w.client.get(w.keys_url(w.other), headers=w.headers(w.outsider)).json()["data"]) == 1


def test_unknown_and_malformed_key_ids_are_not_found(world) -> None:
    w = world
    for key_id in ("zzzzzzzzzzzz", "unknown-id", "ABCDEFGHIJKL", "x" * 500):
        for method, url, body in routes(w, w.team, key_id)[2:]:
            response = call(w, method, url, body, w.headers(w.admin))
            assert response.status_code == 404 and response.json()["error"]["code"] == "api_key_not_found"
