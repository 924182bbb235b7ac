"""GDPR: export holds everything (plugins included), erasure removes the person, keeps anonymised audit."""

from __future__ import annotations

import pytest

from vendo import Conflict, hookimpl
from vendo.identity.models import AuditEntry, Membership, RefreshToken, User, Workspace


class Notes:
    """A plugin holding personal data: it must answer for it."""

    def __init__(self) -> None:
        self.notes: dict[str, list[str]] = {}
        self.erased_workspaces: list[str] = []

    @hookimpl
    def vendo_export_user_data(self, user_id):
        return {"notes": self.notes.get(user_id, [])}

    @hookimpl
    def vendo_erase_user_data(self, user_id, session, kernel):
        assert session.get(User, user_id) is not None  # runs before the kernel deletes the user
        self.notes.pop(user_id, None)

    @hookimpl
    def vendo_erase_workspace_data(self, workspace_id):
        self.erased_workspaces.append(workspace_id)


@pytest.fixture
def kernel(migrated_kernel):
    return migrated_kernel({"notes": Notes()})


def test_export_is_one_document_with_plugin_sections(kernel) -> None:
    notes = kernel.pm.get_plugin("notes")
    with kernel.session() as session:
        user = kernel.identity.create_user(session, "ada@example.com", name="Ada")
        kernel.sessions.issue(session, user.id, "test")
    notes.notes[user.id] = ["first note"]
    with kernel.session() as session:
        document = kernel.identity.export_user(session, user.id)
    assert document["user"]["email"] == "ada@example.com"
    assert document["memberships"][0]["role"] == "OWNER" and document["memberships"][0]["personal"] is True
    assert document["plugins"] == {"notes": {"notes": ["first note"]}}
    assert [entry["action"] for entry in document["audit"]] == ["user.created"]
    assert len(document["sessions"]) == 1 and "secret_hash" not in str(document)


def test_erasure_removes_the_person_and_anonymises_the_audit(kernel) -> None:
    notes = kernel.pm.get_plugin("notes")
    with kernel.session() as session:
        ada = kernel.identity.create_user(session, "ada@example.com")
        bob = kernel.identity.create_user(session, "bob@example.com")
        team = kernel.identity.create_workspace(session, bob.id, "Team")
        invitation, _token = kernel.identity.invite(session, bob.id, team.id, "ada@example.com", "MEMBER")
        kernel.sessions.issue(session, ada.id, "test")
        personal = kernel.identity.memberships(session, ada.id)[0]["id"]
    notes.notes[ada.id] = ["secret plans"]
    with kernel.session() as session:
        kernel.identity.erase_user(session, ada.id)
    with kernel.session() as session:
        assert session.get(User, ada.id) is None
        assert session.get(Workspace, personal) is None
        assert session.query(Membership).filter_by(user_id=ada.id).count() == 0
        assert session.query(RefreshToken).filter_by(user_id=ada.id).count() == 0
        entries = session.query(AuditEntry).all()
        text = " ".join(f"{e.actor_id} {e.actor_label} {e.target_id} {e.details}" for e in entries)
        assert "ada@example.com" not in text and ada.id not in text
        assert any(e.action == "user.created" and e.actor_label == "erased user" for e in entries)
        assert any(e.action == "user.erased" for e in entries)
    assert ada.id not in notes.notes
    assert notes.erased_workspaces == [personal]


def test_owner_of_a_shared_workspace_must_transfer_first(kernel) -> None:
    with kernel.session() as session:
        ada = kernel.identity.create_user(session, "ada@example.com")
        bob = kernel.identity.create_user(session, "bob@example.com")
        team = kernel.identity.create_workspace(session, ada.id, "Team")
        invitation, token = kernel.identity.invite(session, ada.id, team.id, "bob@example.com")
        kernel.identity.accept_invitation(session, bob.id, token)
    with pytest.raises(Conflict) as refused, kernel.session() as session:
        kernel.identity.erase_user(session, ada.id)
    assert refused.value.code == "owner_required" and team.id in refused.value.message
    with kernel.session() as session:
        assert session.get(User, ada.id) is not None  # nothing half-done
        kernel.identity.transfer_ownership(session, ada.id, team.id, bob.id)
    with kernel.session() as session:
        kernel.identity.erase_user(session, ada.id)
        assert kernel.identity.role_of(session, bob.id, team.id).value == "OWNER"


def test_failing_plugin_aborts_the_whole_erasure(migrated_kernel) -> None:
    class Stubborn:
        @hookimpl
        def vendo_erase_user_data(self, user_id):
            raise RuntimeError("invoice archive offline")

    kernel = migrated_kernel({"stubborn": Stubborn()})
    with kernel.session() as session:
        ada = kernel.identity.create_user(session, "ada@example.com")
    with pytest.raises(Exception, match="invoice archive offline"), kernel.session() as session:
        kernel.identity.erase_user(session, ada.id)
    with kernel.session() as session:
        assert session.get(User, ada.id) is not None
        assert kernel.identity.memberships(session, ada.id)


def test_a_rolled_back_sign_up_leaves_nothing(kernel) -> None:
    """`create_user` nests a savepoint: the caller's rollback must undo it on SQLite too
    (pysqlite's lazy BEGIN once let the savepoint's RELEASE commit the user)."""
    with pytest.raises(RuntimeError), kernel.session() as session:
        kernel.identity.create_user(session, "ghost@example.com")
        raise RuntimeError("the credential could not be stored")
    with kernel.session() as session:
        assert kernel.identity.user_by_email(session, "ghost@example.com") is None
        assert session.query(Workspace).count() == 0
