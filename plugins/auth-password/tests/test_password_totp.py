"""Two-factor authentication: TOTP at the kernel clock, replay refusal, single-use recovery codes."""

from __future__ import annotations

import pyotp
import pytest
from sqlalchemy import select
from vendo_auth_password.models import PasswordCredential, RecoveryCode


def code_at(secret, clock, steps=0):
    """The code an authenticator app shows at the kernel's time (plus ``steps`` of 30 s)."""
    return pyotp.TOTP(secret).at(clock.now.timestamp() + 30 * steps)


@pytest.fixture
def enrolled(api, clock):
    """A user with 2FA on: ``(access_token, secret, recovery_codes)``."""
    token = api.register()["access_token"]
    setup = api.post("/auth/2fa/setup", token=token).json()
    codes = api.post("/auth/2fa/enable", {"code": code_at(setup["secret"], clock)}, token=token).json()
    clock.advance(seconds=30)  # the enabling code was used: move to a fresh one
    return token, setup["secret"], codes["recovery_codes"]


def test_full_totp_flow(api, kernel, clock, strip_request_id):
    token = api.register()["access_token"]
    setup = api.post("/auth/2fa/setup", token=token)
    assert setup.status_code == 200
    body = setup.json()
    secret = body["secret"]
    assert body["otpauth_uri"] == pyotp.TOTP(secret).provisioning_uri(name="ada@example.com", issuer_name="Vendo")
    assert (body["issuer"], body["digits"], body["period"]) == ("Vendo", 6, 30)
    assert api.login().status_code == 200  # pending setup does not change sign-in

    wrong = api.post("/auth/2fa/enable", {"code": "000000" if code_at(secret, clock) != "000000" else "111111"},
                     token=token)
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "invalid_totp_code"
    enabled = api.post("/auth/2fa/enable", {"code": code_at(secret, clock)}, token=token)
    assert enabled.status_code == 200
    codes = enabled.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10

    missing = api.login()
    assert missing.status_code == 401
    assert strip_request_id(missing.json())["error"]["code"] == "totp_required"
    assert missing.json()["error"]["details"] == {"reason": "missing"}
    # the code that enabled 2FA cannot be replayed to sign in
    assert api.login(totp_code=code_at(secret, clock)).json()["error"]["details"] == {"reason": "invalid"}
    clock.advance(seconds=30)
    signed_in = api.login(totp_code=code_at(secret, clock))
    assert signed_in.status_code == 200
    assert api.me(signed_in.json()["access_token"])["method"] == "session:password+totp"
    assert api.login(totp_code=code_at(secret, clock)).status_code == 401  # one code, one sign-in


def test_codes_of_the_neighbouring_steps_are_accepted(api, enrolled, clock):
    _token, secret, _codes = enrolled
    clock.advance(seconds=60)
    assert api.login(totp_code=code_at(secret, clock, steps=-1)).status_code == 200
    assert api.login(totp_code=code_at(secret, clock, steps=+1)).status_code == 200
    clock.advance(seconds=300)
    assert api.login(totp_code=code_at(secret, clock, steps=-2)).status_code == 401
    assert api.login(totp_code=code_at(secret, clock, steps=0)).status_code == 200


def test_totp_is_checked_only_after_the_password(api, enrolled, clock, strip_request_id):
    _token, secret, _codes = enrolled
    wrong = api.login(password="Wrong-password-1", totp_code=code_at(secret, clock))
    unknown = api.login("nobody@example.com", "Wrong-password-1", totp_code="123456")
    assert strip_request_id(wrong.json()) == strip_request_id(unknown.json())
    assert wrong.json()["error"]["code"] == "invalid_credentials"


def test_wrong_totp_codes_count_towards_the_lockout(make_kernel, make_api, clock):
    api = make_api(make_kernel(lockout_threshold=3))
    token = api.register()["access_token"]
    secret = api.post("/auth/2fa/setup", token=token).json()["secret"]
    api.post("/auth/2fa/enable", {"code": code_at(secret, clock)}, token=token)
    clock.advance(seconds=30)
    bad = "999999" if code_at(secret, clock) != "999999" else "888888"
    for _ in range(3):
        assert api.login(totp_code=bad).json()["error"]["code"] == "totp_required"
    assert api.login(totp_code=code_at(secret, clock)).json()["error"]["code"] == "account_locked"


def test_recovery_codes_work_once_each(api, kernel, enrolled):
    _token, _secret, codes = enrolled
    first = api.login(recovery_code=codes[0].upper().replace("-", " "))  # typed loosely
    assert first.status_code == 200
    assert api.me(first.json()["access_token"])["method"] == "session:password+recovery_code"
    again = api.login(recovery_code=codes[0])
    assert again.status_code == 401 and again.json()["error"]["code"] == "totp_required"
    assert api.login(recovery_code=codes[1]).status_code == 200
    assert api.audit("auth.login")[-1]["details"]["recovery_codes_left"] == 8
    assert api.login(recovery_code="aaaaa-bbbbb").status_code == 401
    with kernel.session() as session:
        hashes = [row.code_hash for row in session.scalars(select(RecoveryCode))]
    assert len(hashes) == 10 and not any(code.replace("-", "") in h for code in codes for h in hashes)


def test_the_seed_is_stored_encrypted(api, kernel, enrolled):
    _token, secret, _codes = enrolled
    with kernel.session() as session:
        credential = session.scalars(select(PasswordCredential)).one()
    assert credential.totp_enabled and secret not in credential.totp_secret
    assert kernel.secrets.decrypt("totp", credential.totp_secret) == secret


def test_setup_and_enable_refuse_when_already_enabled(api, enrolled, clock):
    token, secret, _codes = enrolled
    response = api.post("/auth/2fa/setup", token=token)
    assert response.status_code == 409 and response.json()["error"]["code"] == "totp_already_enabled"
    response = api.post("/auth/2fa/enable", {"code": code_at(secret, clock)}, token=token)
    assert response.status_code == 409


def test_enable_needs_setup_first(api):
    token = api.register()["access_token"]
    response = api.post("/auth/2fa/enable", {"code": "123456"}, token=token)
    assert response.status_code == 409 and response.json()["error"]["code"] == "totp_setup_required"


def test_a_new_setup_replaces_the_pending_secret(api, clock):
    token = api.register()["access_token"]
    first = api.post("/auth/2fa/setup", token=token).json()["secret"]
    second = api.post("/auth/2fa/setup", token=token).json()["secret"]
    assert first != second
    if code_at(first, clock) != code_at(second, clock):
        assert api.post("/auth/2fa/enable", {"code": code_at(first, clock)}, token=token).status_code == 422
    assert api.post("/auth/2fa/enable", {"code": code_at(second, clock)}, token=token).status_code == 200


def test_disable_needs_the_password_and_a_code(api, kernel, enrolled, clock):
    token, secret, codes = enrolled
    response = api.post("/auth/2fa/disable", {"password": "Wrong-password-1", "code": code_at(secret, clock)},
                        token=token)
    assert response.status_code == 403 and response.json()["error"]["code"] == "wrong_password"
    response = api.post("/auth/2fa/disable", {"password": api.PASSWORD, "code": "12345"}, token=token)
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_totp_code"
    response = api.post("/auth/2fa/disable", {"password": api.PASSWORD, "code": code_at(secret, clock)},
                        token=token)
    assert response.status_code == 204
    assert api.login().status_code == 200
    with kernel.session() as session:
        credential = session.scalars(select(PasswordCredential)).one()
        assert credential.totp_secret is None and not credential.totp_enabled
        assert session.scalars(select(RecoveryCode)).all() == []
    assert [e["type"] for e in api.events() if e["type"].startswith("auth.2fa")] == [
        "auth.2fa.enabled", "auth.2fa.disabled"]
    response = api.post("/auth/2fa/disable", {"password": api.PASSWORD, "code": code_at(secret, clock)},
                        token=token)
    assert response.status_code == 409 and response.json()["error"]["code"] == "totp_not_enabled"


def test_disable_with_a_recovery_code(api, enrolled):
    token, _secret, codes = enrolled
    response = api.post("/auth/2fa/disable", {"password": api.PASSWORD, "code": codes[3]}, token=token)
    assert response.status_code == 204
    assert api.login().status_code == 200


def test_two_factor_routes_need_a_signed_in_user(api):
    for path in ("/auth/2fa/setup", "/auth/2fa/enable", "/auth/2fa/disable"):
        response = api.post(path, {"code": "123456", "password": "x"})
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "authentication_required"
