"""Identity over HTTP: sessions, workspaces, members, invitations, audit, integrators' dependencies."""

from __future__ import annotations

import json

import pytest
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient

from vendo import Principal, create_app, hookimpl, require_permission, require_role, require_scope
from vendo.identity.auth import WorkspaceAccess


class Notes:
    """An integrator's plugin protecting its routes with the kernel's dependencies."""

    @hookimpl
    def vendo_register_routes(self, register):
        router = APIRouter()

        @router.post("/workspaces/{workspace_id}/notes")
        def create(workspace_id: str, access: WorkspaceAccess = Depends(require_role("MEMBER"))) -> dict:
            return {"workspace": access.workspace, "role": access.role.value}

        @router.post("/workspaces/{workspace_id}/ai")
        def ai(workspace_id: str, access: WorkspaceAccess = Depends(require_permission("features.use"))) -> dict:
            return {"ok": True}

        @router.get("/scoped", dependencies=[Depends(require_scope("notes:read"))])
        def scoped() -> dict:
            return {"ok": True}

        register(router)


@pytest.fixture
def world(migrated_kernel, vendo_clock):
    """Ada owns Team; Bob is ADMIN, Cy MEMBER, Dee VIEWER; Eve is a stranger."""
    kernel = migrated_kernel({"notes": Notes()}, clock=vendo_clock)
    people = {}
    with kernel.session() as session:
        for name in ("ada", "bob", "cy", "dee", "eve"):
            user = kernel.identity.create_user(session, f"{name}@example.com", name=name.title())
            people[name] = {"id": user.id, "pair": kernel.sessions.issue(session, user.id, "test")}
        team = kernel.identity.create_workspace(session, people["ada"]["id"], "Team")
        for name, role in (("bob", "ADMIN"), ("cy", "MEMBER"), ("dee", "VIEWER")):
            _invitation, token = kernel.identity.invite(session, people["ada"]["id"], team.id,
                                                        f"{name}@example.com", role)
            kernel.identity.accept_invitation(session, people[name]["id"], token)
    client = TestClient(create_app(kernel))
    client.__enter__()
    yield kernel, client, people, team.id
    client.__exit__(None, None, None)


def auth(people, name):
    return {"Authorization": f"Bearer {people[name]['pair'].access_token}"}


def test_me_lists_workspaces_with_roles(world) -> None:
    _kernel, client, people, team = world
    body = client.get("/api/v1/me", headers=auth(people, "bob")).json()
    assert body["email"] == "bob@example.com"
    assert {(w["name"], w["role"]) for w in body["workspaces"]} == {("Bob's workspace", "OWNER"), ("Team", "ADMIN")}


def test_anonymous_and_bad_tokens_are_401(world) -> None:
    _kernel, client, _people, _team = world
    anonymous = client.get("/api/v1/me")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "authentication_required"
    assert anonymous.headers["www-authenticate"] == "Bearer"
    forged = client.get("/api/v1/me", headers={"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln"})
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid_token"


def test_access_token_expires_with_the_kernel_clock(world, vendo_clock) -> None:
    kernel, client, people, _team = world
    vendo_clock.advance(seconds=kernel.settings.sessions.access_ttl + 1)
    response = client.get("/api/v1/me", headers=auth(people, "ada"))
    assert response.status_code == 401 and response.json()["error"]["code"] == "token_expired"


def test_refresh_rotates_and_reuse_revokes_the_family(world) -> None:
    kernel, client, people, _team = world
    first = people["ada"]["pair"].refresh_token
    second = client.post("/api/v1/auth/refresh", json={"refresh_token": first}).json()
    third = client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert third.status_code == 200
    replay = client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert replay.status_code == 401 and replay.json()["error"]["code"] == "refresh_token_reused"
    latest = client.post("/api/v1/auth/refresh", json={"refresh_token": third.json()["refresh_token"]})
    assert latest.status_code == 401  # the whole family was revoked
    actions = [e["action"] for e in kernel.audit.query(kernel_workspace(kernel, people["ada"]["id"]))]
    assert actions  # personal workspace entries exist; reuse is recorded without workspace:
    with kernel.session() as session:
        from vendo.identity.models import AuditEntry

        assert session.query(AuditEntry).filter_by(action="auth.refresh_token_reused").count() == 1


def kernel_workspace(kernel, user_id):
    with kernel.session() as session:
        return kernel.identity.memberships(session, user_id)[0]["id"]


def test_logout_ends_the_session(world) -> None:
    _kernel, client, people, _team = world
    token = people["cy"]["pair"].refresh_token
    assert client.post("/api/v1/auth/logout", json={"refresh_token": token}).status_code == 204
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": token}).status_code == 401
    garbage = client.post("/api/v1/auth/refresh", json={"refresh_token": "vrt_nope.nope"})
    assert garbage.status_code == 401 and garbage.json()["error"]["code"] == "invalid_refresh_token"


@pytest.mark.parametrize(
    ("who", "status"), [("ada", 200), ("bob", 200), ("cy", 403), ("dee", 403), ("eve", 404)],
)
def test_member_list_follows_the_matrix(world, who, status) -> None:
    _kernel, client, people, team = world
    assert client.get(f"/api/v1/workspaces/{team}/members", headers=auth(people, who)).status_code == status


@pytest.mark.parametrize(
    ("who", "notes", "ai"), [("ada", 200, 200), ("cy", 200, 200), ("dee", 403, 403), ("eve", 404, 404)],
)
def test_integrator_routes_use_roles_and_permissions(world, who, notes, ai) -> None:
    _kernel, client, people, team = world
    assert client.post(f"/api/v1/workspaces/{team}/notes", headers=auth(people, who)).status_code == notes
    assert client.post(f"/api/v1/workspaces/{team}/ai", headers=auth(people, who)).status_code == ai


def test_signed_in_users_hold_every_scope(world) -> None:
    _kernel, client, people, _team = world
    assert client.get("/api/v1/scoped", headers=auth(people, "dee")).status_code == 200
    assert client.get("/api/v1/scoped").status_code == 401


def test_role_changes_and_their_limits(world) -> None:
    _kernel, client, people, team = world
    change = lambda who, target, role: client.patch(  # noqa: E731
        f"/api/v1/workspaces/{team}/members/{people[target]['id']}", json={"role": role}, headers=auth(people, who))
    assert change("bob", "dee", "member").status_code == 204
    assert change("cy", "dee", "VIEWER").status_code == 403
    owner = change("bob", "ada", "MEMBER")
    assert owner.status_code == 409 and owner.json()["error"]["code"] == "owner_required"
    promote = change("ada", "bob", "OWNER")
    assert promote.status_code == 422 and promote.json()["error"]["code"] == "use_transfer"
    assert change("ada", "bob", "boss").json()["error"]["code"] == "invalid_role"


def test_last_owner_cannot_leave_and_transfer_works(world) -> None:
    kernel, client, people, team = world
    leave = client.delete(f"/api/v1/workspaces/{team}/members/{people['ada']['id']}", headers=auth(people, "ada"))
    assert leave.status_code == 409 and leave.json()["error"]["code"] == "owner_required"
    assert client.delete(f"/api/v1/workspaces/{team}/members/{people['dee']['id']}",
                         headers=auth(people, "dee")).status_code == 204  # anyone else may leave
    transfer = client.post(f"/api/v1/workspaces/{team}/transfer-ownership", json={"user_id": people["cy"]["id"]},
                           headers=auth(people, "ada"))
    assert transfer.status_code == 204
    with kernel.session() as session:
        assert kernel.identity.role_of(session, people["cy"]["id"], team).value == "OWNER"
        assert kernel.identity.role_of(session, people["ada"]["id"], team).value == "ADMIN"


def test_workspace_crud(world) -> None:
    _kernel, client, people, team = world
    assert client.patch(f"/api/v1/workspaces/{team}", json={"name": "Renamed"},
                        headers=auth(people, "bob")).json()["name"] == "Renamed"
    assert client.delete(f"/api/v1/workspaces/{team}", headers=auth(people, "bob")).status_code == 403
    personal = kernel_workspace(_kernel, people["ada"]["id"])
    refused = client.delete(f"/api/v1/workspaces/{personal}", headers=auth(people, "ada"))
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "personal_workspace"
    assert client.delete(f"/api/v1/workspaces/{team}", headers=auth(people, "ada")).status_code == 204
    assert client.get(f"/api/v1/workspaces/{team}", headers=auth(people, "ada")).status_code == 404
    empty = client.post("/api/v1/workspaces", json={"name": ""}, headers=auth(people, "eve"))
    assert empty.status_code == 422


def test_invitation_lifecycle(world, vendo_clock) -> None:
    kernel, client, people, team = world
    created = client.post(f"/api/v1/workspaces/{team}/invitations", json={"email": "Eve@Example.com", "role": "VIEWER"},
                          headers=auth(people, "bob"))
    assert created.status_code == 201
    token = created.json()["token"]
    listed = client.get(f"/api/v1/workspaces/{team}/invitations", headers=auth(people, "bob")).json()["data"]
    eve = next(i for i in listed if i["email"] == "Eve@Example.com")
    assert eve["status"] == "pending" and all("token" not in i for i in listed)
    wrong = client.post("/api/v1/invitations/accept", json={"token": token}, headers=auth(people, "cy"))
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "invitation_email_mismatch"
    accepted = client.post("/api/v1/invitations/accept", json={"token": token}, headers=auth(people, "eve"))
    assert accepted.status_code == 200 and accepted.json()["role"] == "VIEWER"
    again = client.post("/api/v1/invitations/accept", json={"token": token}, headers=auth(people, "eve"))
    assert again.status_code == 410 and again.json()["error"]["code"] == "invitation_used"
    bogus = client.post("/api/v1/invitations/accept", json={"token": "vinv_forged"}, headers=auth(people, "eve"))
    assert bogus.status_code == 400 and bogus.json()["error"]["code"] == "invalid_token"
    member = client.post(f"/api/v1/workspaces/{team}/invitations", json={"email": "cy@example.com"},
                         headers=auth(people, "ada"))
    assert member.status_code == 409 and member.json()["error"]["code"] == "already_member"
    by_member = client.post(f"/api/v1/workspaces/{team}/invitations", json={"email": "x@example.com"},
                            headers=auth(people, "cy"))
    assert by_member.status_code == 403
    # No subscriber here: the only deliveries are the invitation emails, waiting for a notifier.
    waiting = kernel.outbox.list(limit=500)
    assert {(d["subscriber"], d["status"], d["attempts"]) for d in waiting} == {("notify:email", "pending", 0)}


def test_invitation_expiry_and_revocation(world, vendo_clock) -> None:
    kernel, client, people, team = world
    first = client.post(f"/api/v1/workspaces/{team}/invitations", json={"email": "eve@example.com"},
                        headers=auth(people, "ada")).json()
    second = client.post(f"/api/v1/workspaces/{team}/invitations", json={"email": "eve@example.com"},
                         headers=auth(people, "ada")).json()
    replaced = client.post("/api/v1/invitations/accept", json={"token": first["token"]}, headers=auth(people, "eve"))
    assert replaced.status_code == 410 and replaced.json()["error"]["code"] == "invitation_revoked"
    vendo_clock.advance(seconds=kernel.settings.sessions.invitation_ttl + 1)
    people["eve"]["pair"] = _fresh_pair(kernel, people["eve"]["id"])
    expired = client.post("/api/v1/invitations/accept", json={"token": second["token"]}, headers=auth(people, "eve"))
    assert expired.status_code == 410 and expired.json()["error"]["code"] == "invitation_expired"
    people["ada"]["pair"] = _fresh_pair(kernel, people["ada"]["id"])
    revoke = client.delete(f"/api/v1/workspaces/{team}/invitations/{second['id']}", headers=auth(people, "ada"))
    assert revoke.status_code == 204


def _fresh_pair(kernel, user_id):
    with kernel.session() as session:
        return kernel.sessions.issue(session, user_id, "test")


def test_audit_log_is_filterable_and_exportable(world) -> None:
    _kernel, client, people, team = world
    client.patch(f"/api/v1/workspaces/{team}/members/{people['dee']['id']}", json={"role": "MEMBER"},
                 headers=auth(people, "bob"))
    entries = client.get(f"/api/v1/workspaces/{team}/audit", headers=auth(people, "bob")).json()["data"]
    assert entries[0]["action"] == "member.role_changed" and entries[0]["details"] == {"from": "VIEWER", "to": "MEMBER"}
    only = client.get(f"/api/v1/workspaces/{team}/audit", params={"action": "invitation"},
                      headers=auth(people, "bob")).json()["data"]
    assert {e["action"] for e in only} == {"invitation.created", "invitation.accepted"}
    assert client.get(f"/api/v1/workspaces/{team}/audit", headers=auth(people, "cy")).status_code == 403
    export = client.get(f"/api/v1/workspaces/{team}/audit/export", headers=auth(people, "ada"))
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert export.headers["content-type"].startswith("application/x-ndjson")
    assert lines[0]["action"] == "workspace.created" and lines[-1]["action"] == "member.role_changed"


def test_gdpr_over_http(world) -> None:
    _kernel, client, people, team = world
    export = client.get("/api/v1/me/export", headers=auth(people, "cy")).json()
    assert export["user"]["email"] == "cy@example.com" and len(export["memberships"]) == 2
    refused = client.delete("/api/v1/me", headers=auth(people, "ada"))
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "owner_required"
    assert client.delete("/api/v1/me", headers=auth(people, "cy")).status_code == 204
    assert client.get("/api/v1/me", headers=auth(people, "cy")).json()["error"]["code"] == "user_not_found"
    members = client.get(f"/api/v1/workspaces/{team}/members", headers=auth(people, "ada")).json()["data"]
    assert "cy@example.com" not in {m["email"] for m in members}


def test_duplicate_email_is_409_case_insensitively(world) -> None:
    from vendo import Conflict

    kernel, _client, _people, _team = world
    with pytest.raises(Conflict) as info, kernel.session() as session:
        kernel.identity.create_user(session, "  ADA@example.COM ")
    assert info.value.code == "email_taken"


def test_principal_dataclass_defaults() -> None:
    principal = Principal(subject="u")
    assert principal.scopes == frozenset() and principal.attributes == {} and principal.credential is None


def test_workspace_credentials_cannot_act_on_the_account(world) -> None:
    """A workspace-bound credential (an API key) never exports or erases its creator's account,
    and sees only its own workspace in /me."""
    from vendo import Principal

    kernel, client, people, team = world

    class KeyLike:
        def authenticate(self, request):
            if request.headers.get("x-test-key") == "k":
                return Principal(subject=people["ada"]["id"], workspace=team, scopes=frozenset({"notes:read"}),
                                 method="api_key", credential="key_1")
            return None

    from vendo.providers import Registration

    kernel.providers.commit([Registration("auth", "test-key", KeyLike(), "test")])
    kernel.providers.configure({"auth": ["test-key", "session"]})
    headers = {"x-test-key": "k"}
    assert [w["id"] for w in client.get("/api/v1/me", headers=headers).json()["workspaces"]] == [team]
    for response in (client.get("/api/v1/me/export", headers=headers), client.delete("/api/v1/me", headers=headers)):
        assert response.status_code == 403 and response.json()["error"]["code"] == "user_required"
    assert client.get("/api/v1/me", headers=auth(people, "ada")).status_code == 200  # still there
