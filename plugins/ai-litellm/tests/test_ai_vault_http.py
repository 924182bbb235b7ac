"""The BYOK vault over HTTP: write-only keys, fingerprints, admin-only writes, audit,
encryption at rest bound to the workspace; on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from vendo.ai.models import AICredential


def test_store_list_rotate_delete(make_gateway) -> None:
    gw = make_gateway("pro")
    admin = gw.session_headers(gw.owner, gw.team)
    created = gw.http.post("/api/v1/ai/credentials", json={"provider": "OpenAI", "key": "sk-first-key-abcd"},
                           headers=admin)
    assert created.status_code == 201, created.text
    view = created.json()
    assert set(view) == {"id", "provider", "fingerprint", "created_by", "created_at", "rotated_at"}
    assert view["provider"] == "openai" and view["fingerprint"].startswith("\u2026abcd sha256:")
    assert "sk-first-key-abcd" not in created.text and view["rotated_at"] is None

    rotated = gw.http.post("/api/v1/ai/credentials", json={"provider": "openai", "key": "sk-second-key-wxyz"},
                           headers=admin)
    assert rotated.status_code == 200 and rotated.json()["id"] == view["id"]
    assert rotated.json()["rotated_at"] is not None and rotated.json()["fingerprint"] != view["fingerprint"]
    gw.http.post("/api/v1/ai/credentials", json={"provider": "anthropic", "key": "sk-ant-key-000111"}, headers=admin)

    member = gw.session_headers(gw.member, gw.team)
    listing = gw.http.get("/api/v1/ai/credentials", headers=member)
    assert listing.status_code == 200
    assert [c["provider"] for c in listing.json()["data"]] == ["anthropic", "openai"]
    assert "sk-second-key-wxyz" not in listing.text and "sk-ant-key-000111" not in listing.text
    by_key = gw.http.get("/api/v1/ai/credentials", headers={"Authorization": f"Bearer {gw.team_key}"})
    assert by_key.json() == listing.json()

    assert gw.http.delete("/api/v1/ai/credentials/anthropic", headers=admin).status_code == 204
    missing = gw.http.delete("/api/v1/ai/credentials/anthropic", headers=admin)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "credential_not_found"
    assert [c["provider"] for c in gw.http.get("/api/v1/ai/credentials", headers=member).json()["data"]] == ["openai"]

    audit = gw.http.get(f"/api/v1/workspaces/{gw.team}/audit", headers=admin).json()["data"]
    actions = [entry["action"] for entry in audit if entry["action"].startswith("ai.credential")]
    assert sorted(actions) == sorted(["ai.credential.created", "ai.credential.rotated", "ai.credential.created",
                                      "ai.credential.deleted"])
    assert "sk-" not in str(audit)


def test_only_admins_write_and_bad_input_is_refused(make_gateway) -> None:
    gw = make_gateway("pro")
    member = gw.session_headers(gw.member, gw.team)
    refused = gw.http.post("/api/v1/ai/credentials", json={"provider": "openai", "key": "sk-member-key-1234"},
                           headers=member)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_role"
    assert gw.http.delete("/api/v1/ai/credentials/openai", headers=member).status_code == 403
    admin = gw.session_headers(gw.owner, gw.team)
    for body, code in (({"provider": "open ai!", "key": "sk-valid-key-1234"}, "invalid_provider"),
                       ({"provider": "openai", "key": "short"}, "invalid_key"),
                       ({"provider": "openai", "key": "sk with spaces inside"}, "invalid_key")):
        response = gw.http.post("/api/v1/ai/credentials", json=body, headers=admin)
        assert response.status_code == 422 and response.json()["error"]["code"] == code
    extra = gw.http.post("/api/v1/ai/credentials", json={"provider": "openai", "key": "sk-valid-key-1234", "x": 1},
                         headers=admin)
    assert extra.status_code == 422
    no_workspace = gw.http.post("/api/v1/ai/credentials", json={"provider": "openai", "key": "sk-valid-key-1234"},
                                headers=gw.session_headers(gw.owner))
    assert no_workspace.status_code == 422 and no_workspace.json()["error"]["code"] == "workspace_required"
    assert gw.http.get("/api/v1/ai/credentials", headers=admin).json()["data"] == []


def test_keys_are_encrypted_and_bound_to_their_workspace(make_gateway) -> None:
    gw = make_gateway("pro")
    for workspace, user, key in ((gw.team, gw.owner, "sk-team-plain-7777"), (gw.other, gw.outsider, "sk-other-8888")):
        response = gw.http.post("/api/v1/ai/credentials", json={"provider": "openai", "key": key},
                                headers=gw.session_headers(user, workspace))
        assert response.status_code == 201
    with gw.kernel.session() as session:
        rows = {row.workspace: row for row in session.scalars(select(AICredential))}
        assert "sk-team-plain-7777" not in rows[gw.team].ciphertext and "7777" not in rows[gw.team].ciphertext
        assert gw.kernel.ai.vault.key_for(session, gw.team, "openai") == "sk-team-plain-7777"
        # A ciphertext copied into another workspace's row does not open there.
        session.execute(update(AICredential).where(AICredential.workspace == gw.other)
                        .values(ciphertext=rows[gw.team].ciphertext))
    from vendo import InvalidInput

    with gw.kernel.session() as session, pytest.raises(InvalidInput):
        gw.kernel.ai.vault.key_for(session, gw.other, "openai")
    # The other workspace cannot delete or overwrite the team's key, even naming the team.
    other_admin = gw.session_headers(gw.outsider, gw.team)
    assert gw.http.delete("/api/v1/ai/credentials/openai", headers=other_admin).status_code == 404
    by_key = gw.http.post("/api/v1/ai/credentials", json={"provider": "openai", "key": "sk-hijack-key-0000"},
                          headers={"Authorization": f"Bearer {gw.other_key}", "X-Vendo-Workspace": gw.team})
    assert by_key.status_code in (200, 201)  # lands in the key's own workspace, never the team's
    with gw.kernel.session() as session:
        assert gw.kernel.ai.vault.key_for(session, gw.team, "openai") == "sk-team-plain-7777"
        assert gw.kernel.ai.vault.key_for(session, gw.other, "openai") == "sk-hijack-key-0000"


def test_deleting_a_workspace_deletes_its_keys(make_gateway) -> None:
    gw = make_gateway("pro")
    with gw.kernel.session() as session:
        gw.kernel.ai.vault.put(session, gw.other, "openai", "sk-doomed-key-5555", actor=gw.outsider.id)
        gw.kernel.ai.set_key_budget(session, gw.other, "somekey", 5.0, actor=gw.outsider.id)
    response = gw.http.delete(f"/api/v1/workspaces/{gw.other}", headers=gw.session_headers(gw.outsider))
    assert response.status_code in (200, 204), response.text
    with gw.kernel.session() as session:
        assert session.scalars(select(AICredential).where(AICredential.workspace == gw.other)).all() == []
