"""Account pre-hijacking defence: when the verified owner of an address claims an account whose
address was never verified, sessions end, plugins revoke their credentials in the same
transaction, and the claim is audited; an already verified account changes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from vendo import hookimpl
from vendo.identity.models import AuditEntry, RefreshToken


class Vault:
    """A plugin holding credentials (e.g. passwords): it revokes them when asked."""

    def __init__(self) -> None:
        self.credentials: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail = False

    @hookimpl
    def vendo_revoke_user_credentials(self, user_id, reason, session, kernel):
        if self.fail:
            raise RuntimeError("vault unreachable")
        self.calls.append((user_id, reason))
        self.credentials.pop(user_id, None)


@pytest.fixture
def kernel(migrated_kernel):
    return migrated_kernel({"vault": Vault()})


def test_claiming_an_unverified_account_ends_sessions_and_revokes_credentials(kernel) -> None:
    vault = kernel.pm.get_plugin("vault")
    with kernel.session() as session:
        user = kernel.identity.create_user(session, "victim@example.com")  # created by someone else
        kernel.sessions.issue(session, user.id, "password")
    vault.credentials[user.id] = "the squatter's password"
    with kernel.session() as session:
        assert kernel.identity.claim_account(session, user.id, method="oidc:google") is True
    assert vault.calls == [(user.id, "account_claimed")] and user.id not in vault.credentials
    with kernel.session() as session:
        assert kernel.identity.user(session, user.id).email_verified_at is not None
        tokens = session.scalars(select(RefreshToken).where(RefreshToken.user_id == user.id)).all()
        assert tokens and all(token.revoked_at is not None for token in tokens)
        [entry] = session.scalars(select(AuditEntry).where(AuditEntry.action == "identity.account.claimed")).all()
        assert (entry.target_id, entry.details) == (user.id, {"method": "oidc:google"})


def test_a_verified_account_is_not_claimed_again(kernel) -> None:
    vault = kernel.pm.get_plugin("vault")
    with kernel.session() as session:
        user = kernel.identity.create_user(session, "owner@example.com", verified=True)
    vault.credentials[user.id] = "the owner's password"
    with kernel.session() as session:
        assert kernel.identity.claim_account(session, user.id, method="oidc:google") is False
    assert vault.calls == [] and vault.credentials[user.id] == "the owner's password"


def test_a_plugin_failing_to_revoke_aborts_the_claim(kernel) -> None:
    vault = kernel.pm.get_plugin("vault")
    vault.fail = True
    with kernel.session() as session:
        user = kernel.identity.create_user(session, "victim@example.com")
    with pytest.raises(Exception):
        with kernel.session() as session:
            kernel.identity.claim_account(session, user.id, method="oidc:google")
    with kernel.session() as session:
        assert kernel.identity.user(session, user.id).email_verified_at is None  # nothing half-done
