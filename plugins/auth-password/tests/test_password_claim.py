"""Account pre-hijacking: an account registered with a password, its address never verified,
claimed by the address's verified owner (``kernel.identity.claim_account``, as an OIDC sign-in
does): the squatter's password, 2FA and pending tokens stop working; the owner sets a password
through the reset flow."""

from __future__ import annotations

from sqlalchemy import select
from vendo_auth_password.models import PasswordCredential, SingleUseToken

NEW_PASSWORD = "Owner-Chose-This-9"


def test_a_claimed_account_loses_the_password_set_before(api, kernel):
    squatter = api.register()
    user_id = api.me(squatter["access_token"])["id"]
    api.post("/auth/password/forgot", {"email": "ada@example.com"})  # a pending reset token
    with kernel.session() as session:
        assert kernel.identity.claim_account(session, user_id, method="oidc:google") is True
    assert api.login().status_code == 401  # the squatter's password is gone
    assert api.post("/auth/refresh", {"refresh_token": squatter["refresh_token"]}).status_code == 401
    with kernel.session() as session:
        assert session.get(PasswordCredential, user_id) is None
        assert session.scalars(select(SingleUseToken).where(SingleUseToken.user_id == user_id)).all() == []
    assert [e["details"]["method"] for e in api.audit("identity.account.claimed")] == ["oidc:google"]


def test_the_owner_sets_a_password_again_through_a_reset(api, kernel, clock):
    user_id = api.me(api.register()["access_token"])["id"]
    with kernel.session() as session:
        kernel.identity.claim_account(session, user_id, method="oidc:google")
    clock.advance(seconds=3600)  # past the token request interval of the squatter's registration
    api.post("/auth/password/forgot", {"email": "ada@example.com"})
    token = api.last_token("auth.password_reset.requested")
    assert api.post("/auth/password/reset", {"token": token, "password": NEW_PASSWORD}).status_code == 204
    assert api.login(password=NEW_PASSWORD).status_code == 200


def test_a_verified_account_keeps_its_password(api, kernel):
    user_id = api.me(api.register()["access_token"])["id"]
    with kernel.session() as session:
        kernel.identity.mark_email_verified(session, user_id)
        assert kernel.identity.claim_account(session, user_id, method="oidc:google") is False
    assert api.login().status_code == 200
