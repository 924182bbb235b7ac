"""Secrets stay secret (logs, audit, lists, outbox, database) and GDPR export/erasure
answer for the keys (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import logging
from typing import Any

import sqlalchemy as sa


def secret_of(key: str) -> str:
    return key[20:]


def database_text(kernel: Any) -> str:
    """Every row of every table, as one string."""
    chunks = []
    with kernel.engine.connect() as connection:
        for table in sa.inspect(connection).get_table_names():
            for row in connection.execute(sa.text(f'SELECT * FROM "{table}"')):
                chunks.append(f"{table}: {tuple(row)}")
    return "\n".join(chunks)


def test_secrets_never_leave_the_creating_response(world, clock, caplog) -> None:
    w = world
    vendo_logger = logging.getLogger("vendo")
    vendo_logger.addHandler(caplog.handler)  # "vendo" may not propagate once a CLI configured logging
    try:
        with caplog.at_level(logging.DEBUG):
            created = w.create_key(name="Deploys", scopes=["deploys:write"])
            key = created["key"]
            w.client.get("/api/v1/me", headers=w.bearer(key))
            w.client.get("/api/v1/me", headers=w.bearer(key[:-1] + ("A" if key[-1] != "A" else "B")))
            w.client.get("/api/v1/me", headers={"X-API-Key": "vk_live_" + secret_of(key)})
            rotated = w.client.post(w.keys_url(None, created["id"], "rotate"), headers=w.headers(w.admin)).json()
            w.client.get("/api/v1/me", headers=w.bearer(rotated["key"]))
            w.client.delete(w.keys_url(None, rotated["id"]), headers=w.headers(w.admin))
            w.client.get("/api/v1/me", headers=w.bearer(rotated["key"]))
            listing = w.client.get(w.keys_url(), headers=w.headers(w.admin)).text
            one = w.client.get(w.keys_url(None, created["id"]), headers=w.headers(w.admin)).text
            audit = w.client.get(f"/api/v1/workspaces/{w.team}/audit", headers=w.headers(w.owner)).text
            export = w.client.get("/api/v1/me/export", headers=w.headers(w.admin)).text
    finally:
        vendo_logger.removeHandler(caplog.handler)
    secrets = [secret_of(key), secret_of(rotated["key"])]
    assert f"API key {created['id']} created" in caplog.text  # the logs were captured
    with w.kernel.engine.connect() as connection:
        events = [dict(row._mapping) for row in connection.execute(
            sa.text("SELECT type, payload FROM vendo_outbox_events"))]
    outbox = json.dumps(events, default=str)
    assert {"api_key.created", "api_key.rotated", "api_key.revoked"} <= {event["type"] for event in events}
    everywhere = {"logs": caplog.text, "list": listing, "get": one, "audit": audit, "export": export,
                  "outbox": outbox, "database": database_text(w.kernel)}
    for place, text in everywhere.items():
        for secret in secrets:
            assert secret not in text, f"a key's secret leaked into {place}"
    assert created["id"] in listing and created["id"] in audit and created["id"] in export


def test_only_a_keyed_hash_is_stored(world) -> None:
    w = world
    created = w.create_key()
    with w.kernel.engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT secret_hash FROM auth_apikeys_keys WHERE id = :id"),
                                    {"id": created["id"]}).scalar_one()
    assert stored == w.kernel.secrets.keyed_hash("api-key", secret_of(created["key"]))
    import hashlib

    assert stored != hashlib.sha256(secret_of(created["key"]).encode()).hexdigest()  # keyed, not a plain digest


def test_export_lists_the_users_keys_without_secrets(world) -> None:
    w = world
    team_key = w.create_key(name="Team key")
    with w.kernel.session() as session:
        personal = w.kernel.identity.memberships(session, w.admin.id)[0]["id"]
    own_key = w.create_key(name="Personal key", workspace=personal)
    w.create_key(user=w.owner, name="Not the admin's")
    document = w.client.get("/api/v1/me/export", headers=w.headers(w.admin)).json()
    section = document["plugins"]["auth-apikeys"]
    assert sorted(k["name"] for k in section["api_keys"]) == ["Personal key", "Team key"]
    by_id = {k["id"]: k for k in section["api_keys"]}
    assert by_id[team_key["id"]]["workspace_id"] == w.team and by_id[own_key["id"]]["workspace_id"] == personal
    assert "keyed hash" in section["secrets"]
    assert "secret_hash" not in json.dumps(section) and team_key["key"] not in json.dumps(document)
    assert "auth-apikeys" not in w.client.get("/api/v1/me/export", headers=w.headers(w.viewer)).json()["plugins"]


def test_erasure_deletes_the_users_keys_in_the_same_transaction(world) -> None:
    w = world
    admins = w.create_key(name="Admin's key")
    owners = w.create_key(user=w.owner, name="Owner's key")
    erased = w.client.delete("/api/v1/me", headers=w.headers(w.admin))
    assert erased.status_code == 204, erased.text
    refused = w.client.get("/api/v1/me", headers=w.bearer(admins["key"]))
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert w.client.get("/api/v1/me", headers=w.bearer(owners["key"])).status_code == 200
    remaining = w.client.get(w.keys_url(), headers=w.headers(w.owner)).json()["data"]
    assert [k["id"] for k in remaining] == [owners["id"]]
    entries = w.kernel.audit.query(w.team, action="api_key.deleted")
    assert [e["target_id"] for e in entries] == [admins["id"]] and entries[0]["actor_id"] is None
    assert w.admin.id not in json.dumps(w.kernel.audit.query(w.team))
    with w.kernel.engine.connect() as connection:
        creators = set(connection.execute(sa.text("SELECT created_by FROM auth_apikeys_keys")).scalars())
    assert creators == {w.owner.id}


def test_an_erasure_that_fails_keeps_the_keys(world) -> None:
    """The owner of a shared workspace cannot be erased: nothing of theirs is deleted."""
    w = world
    owners = w.create_key(user=w.owner)
    refused = w.client.delete("/api/v1/me", headers=w.headers(w.owner))
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "owner_required"
    assert w.client.get("/api/v1/me", headers=w.bearer(owners["key"])).status_code == 200
    assert w.kernel.audit.query(w.team, action="api_key.deleted") == []


def test_deleting_a_workspace_deletes_its_keys(world) -> None:
    w = world
    theirs = w.create_key(user=w.outsider, workspace=w.other)
    ours = w.create_key()
    deleted = w.client.delete(f"/api/v1/workspaces/{w.other}", headers=w.headers(w.outsider))
    assert deleted.status_code == 204, deleted.text
    assert w.client.get("/api/v1/me", headers=w.bearer(theirs["key"])).status_code == 401
    assert w.client.get("/api/v1/me", headers=w.bearer(ours["key"])).status_code == 200
    with w.kernel.engine.connect() as connection:
        ids = set(connection.execute(sa.text("SELECT id FROM auth_apikeys_keys")).scalars())
    assert ids == {ours["id"]}


def test_keys_of_a_claimed_account_are_revoked(world) -> None:
    """Account pre-hijacking: the keys created by an account whose address was never verified
    stop working when the address's verified owner claims it; other members' keys keep working."""
    w = world
    squatted = w.create_key(name="Squatter's")
    other = w.create_key(user=w.owner, name="Owner's")
    assert w.client.get("/api/v1/me", headers=w.bearer(squatted["key"])).status_code == 200
    with w.kernel.session() as session:
        assert w.kernel.identity.user(session, w.admin.id).email_verified_at is None
        assert w.kernel.identity.claim_account(session, w.admin.id, method="oidc:google") is True
    assert w.client.get("/api/v1/me", headers=w.bearer(squatted["key"])).status_code == 401
    assert w.client.get("/api/v1/me", headers=w.bearer(other["key"])).status_code == 200
    listed = {k["id"]: k for k in w.client.get(w.keys_url(), headers=w.headers(w.owner)).json()["data"]}
    assert listed[squatted["id"]]["revoked_at"] is not None and listed[other["id"]]["revoked_at"] is None
    audit = w.client.get(f"/api/v1/workspaces/{w.team}/audit", headers=w.headers(w.owner)).json()
    assert any(e["action"] == "api_key.revoked" and e["details"]["reason"] == "account_claimed"
               for e in audit["data"])
