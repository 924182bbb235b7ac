"""Registration through real HTTP: the account, its session, the policy and one transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from vendo_auth_password.models import PasswordCredential


def test_register_then_me_refresh_and_logout(api):
    pair = api.register("Ada@Example.com", name="Ada Lovelace")
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
    me = api.me(pair["access_token"])
    assert me["email"] == "Ada@Example.com" and me["name"] == "Ada Lovelace"
    assert me["method"] == "session:password" and me["email_verified"] is False
    assert [w["role"] for w in me["workspaces"]] == ["OWNER"]

    refreshed = api.post("/auth/refresh", {"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200
    new_pair = refreshed.json()
    assert api.me(new_pair["access_token"])["id"] == me["id"]

    assert api.post("/auth/logout", {"refresh_token": new_pair["refresh_token"]}).status_code == 204
    again = api.post("/auth/refresh", {"refresh_token": new_pair["refresh_token"]})
    assert again.status_code == 401


def test_registered_user_can_sign_in_with_any_case_of_their_email(api):
    api.register("ada@example.com")
    response = api.login("  ADA@example.COM ")
    assert response.status_code == 200
    assert api.me(response.json()["access_token"])["email"] == "ada@example.com"


def test_registration_stores_an_argon2id_hash_only(api, kernel):
    api.register()
    with kernel.session() as session:
        credential = session.scalars(select(PasswordCredential)).one()
    assert credential.password_hash.startswith("$argon2id$")
    assert api.PASSWORD not in credential.password_hash


def test_duplicate_email_is_409_email_taken_whatever_the_case(api):
    api.register("ada@example.com")
    response = api.post("/auth/register", {"email": "ADA@example.com", "password": "Another-Pass-77"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "email_taken"


@pytest.mark.parametrize(("password", "rule", "words"), [
    ("Short-1", "min_length", "at least 10 characters"),
    ("ada@example.com", "not_email", "email address"),
    ("ADA@EXAMPLE.COM", "not_email", "email address"),
    ("Password123", "common_password", "most common"),
    ("qwertyuiop", "common_password", "most common"),
    ("abcdefghijklmn", "character_classes", "only lower-case letters"),
    ("12345678901234", "character_classes", "only digits"),
])
def test_weak_passwords_are_422_naming_the_rule(api, kernel, password, rule, words):
    response = api.post("/auth/register", {"email": "ada@example.com", "password": password})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "weak_password"
    assert error["details"]["rule"] == rule
    assert words in error["message"]
    with kernel.session() as session:  # nothing was created
        assert session.scalar(select(func.count()).select_from(PasswordCredential)) == 0
    assert api.login("ada@example.com", password).status_code == 401


def test_minimum_length_is_a_setting(make_kernel, make_api):
    api = make_api(make_kernel(min_length=16))
    response = api.post("/auth/register", {"email": "ada@example.com", "password": "Fifteen-chars-1"})
    assert response.json()["error"]["details"]["rule"] == "min_length"
    assert "16" in response.json()["error"]["message"]


def test_invalid_email_is_422(api):
    response = api.post("/auth/register", {"email": "not-an-email", "password": api.PASSWORD})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_email"


def test_unknown_fields_are_refused(api):
    response = api.post("/auth/register", {"email": "ada@example.com", "password": api.PASSWORD, "admin": True})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


def test_registration_can_be_closed(make_kernel, make_api):
    api = make_api(make_kernel(registration_enabled=False))
    response = api.post("/auth/register", {"email": "ada@example.com", "password": api.PASSWORD})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "registration_closed"


def test_registration_is_one_transaction(api, kernel, monkeypatch):
    """A failure after the user row was written leaves nothing: no user, credential, audit or event."""

    def broken_issue(*args, **kwargs):
        raise RuntimeError("session store down")

    monkeypatch.setattr(kernel.sessions, "issue", broken_issue)
    with pytest.raises(RuntimeError, match="session store down"):  # TestClient re-raises server errors
        api.post("/auth/register", {"email": "ada@example.com", "password": api.PASSWORD})
    monkeypatch.undo()
    with kernel.session() as session:
        assert session.scalar(select(func.count()).select_from(PasswordCredential)) == 0
        assert kernel.identity.user_by_email(session, "ada@example.com") is None
    assert api.events() == [] and api.audit() == []
    api.register("ada@example.com")  # and the address is still free


def test_registration_sends_a_verification_email_unless_disabled(make_kernel, make_api):
    api = make_api(make_kernel())
    api.register("ada@example.com")
    [event] = api.events("auth.email_verification.requested")
    assert event["payload"]["email"] == "ada@example.com" and api.last_token(event["type"]).startswith("vev_")

    quiet = make_api(make_kernel(send_verification_on_register=False))
    quiet.register("bob@example.com")
    assert [e for e in quiet.events("auth.email_verification.requested")
            if e["payload"]["email"] == "bob@example.com"] == []


def test_registration_is_audited_as_a_sign_in(api):
    pair = api.register()
    user_id = api.me(pair["access_token"])["id"]
    [created] = api.audit("user.created")
    assert created["details"] == {"method": "password"}
    [login] = api.audit("auth.login")
    assert login["actor_id"] == user_id and login["outcome"] == "success"
    assert login["details"] == {"method": "password", "via": "register"}


def test_overlong_passwords_are_refused_before_hashing(api):
    for path, body in (("/auth/register", {"email": "ada@example.com"}), ("/auth/login", {"email": "a@b.co"}),
                       ("/auth/password/reset", {"token": "vpr_x"})):
        response = api.post(path, {**body, "password": "Aa1-" * 300})
        assert response.status_code == 422, path
        assert response.json()["error"]["code"] == "validation_error"


def test_routes_are_documented_in_openapi(api):
    paths = api.client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/auth/password/change",
            "/api/v1/auth/password/forgot", "/api/v1/auth/password/reset", "/api/v1/auth/email/verify/request",
            "/api/v1/auth/email/verify", "/api/v1/auth/2fa/setup", "/api/v1/auth/2fa/enable",
            "/api/v1/auth/2fa/disable"} <= set(paths)
    assert "totp_code" in str(paths["/api/v1/auth/login"]) or "LoginBody" in str(paths["/api/v1/auth/login"])
