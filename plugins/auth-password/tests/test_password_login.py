"""Sign-in: no user enumeration, lockout with the kernel clock, per-IP throttle, rehashing, audit."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from vendo_auth_password.models import PasswordCredential


@pytest.fixture
def verify_calls(monkeypatch):
    """Every argon2 verification made, as ``(hash, password)`` pairs."""
    calls: list[tuple[str, str]] = []
    original = PasswordHasher.verify

    def counting(self, hash, password):
        calls.append((hash, password))
        return original(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    return calls


def test_login_returns_a_token_pair(api):
    api.register()
    response = api.login()
    assert response.status_code == 200
    pair = response.json()
    assert pair["token_type"] == "bearer" and pair["refresh_token"].startswith("vrt_")
    assert api.me(pair["access_token"])["email"] == "ada@example.com"


def test_unknown_email_and_wrong_password_get_the_same_answer(api, strip_request_id):
    api.register()
    unknown = api.login("nobody@example.com", "Whatever-pass-1")
    wrong = api.login("ada@example.com", "Whatever-pass-1")
    assert unknown.status_code == wrong.status_code == 401
    assert strip_request_id(unknown.json()) == strip_request_id(wrong.json()) == {
        "error": {"code": "invalid_credentials", "message": "invalid email or password", "details": {}}}
    assert unknown.headers.get("www-authenticate") == wrong.headers.get("www-authenticate") == "Bearer"


def test_unknown_email_costs_one_argon2_verification_like_a_wrong_password(api, kernel, verify_calls):
    api.register()
    with kernel.session() as session:
        stored = session.scalars(select(PasswordCredential)).one().password_hash

    api.login("ada@example.com", "Whatever-pass-1")
    assert len(verify_calls) == 1 and verify_calls[0] == (stored, "Whatever-pass-1")

    verify_calls.clear()
    api.login("nobody@example.com", "Whatever-pass-1")
    assert len(verify_calls) == 1
    dummy, password = verify_calls[0]
    assert password == "Whatever-pass-1"
    assert dummy.startswith("$argon2id$") and dummy != stored
    # the dummy hash has the parameters of real ones, so it costs as much to check
    assert dummy.split("$")[3] == stored.split("$")[3]


def test_lockout_after_n_failures_then_unlock_after_the_duration(make_kernel, make_api, clock):
    api = make_api(make_kernel(lockout_threshold=3, lockout_duration=600))
    api.register()
    for _ in range(3):
        assert api.login(password="Wrong-password-1").json()["error"]["code"] == "invalid_credentials"
    locked = api.login()  # even the right password is refused while locked
    assert locked.status_code == 429
    error = locked.json()["error"]
    assert error["code"] == "account_locked"
    assert locked.headers["retry-after"] == "600" and error["details"]["retry_after"] == 600

    clock.advance(seconds=599)
    assert api.login().status_code == 429
    assert api.login().headers["retry-after"] == "1"
    clock.advance(seconds=1)
    assert api.login().status_code == 200


def test_default_lockout_is_five_failures_for_fifteen_minutes(api, clock):
    api.register()
    for _ in range(4):
        api.login(password="Wrong-password-1")
    clock.advance(minutes=30)  # failures count while consecutive, however far apart
    assert api.login(password="Wrong-password-1").status_code == 401
    response = api.login()
    assert response.status_code == 429 and response.headers["retry-after"] == "900"


def test_a_success_resets_the_failure_count(make_kernel, make_api):
    api = make_api(make_kernel(lockout_threshold=3))
    api.register()
    for _ in range(2):
        api.login(password="Wrong-password-1")
    assert api.login().status_code == 200
    for _ in range(2):
        api.login(password="Wrong-password-1")
    assert api.login().status_code == 200


def test_unknown_addresses_lock_exactly_like_accounts(make_kernel, make_api, clock, strip_request_id):
    """A lockout must not reveal that an account exists either."""
    api = make_api(make_kernel(lockout_threshold=3, lockout_duration=600))
    api.register()
    answers = {}
    for email in ("ada@example.com", "nobody@example.com"):
        statuses = [api.login(email, "Wrong-password-1").status_code for _ in range(3)]
        locked = api.login(email, "Wrong-password-1")
        answers[email] = (statuses, locked.status_code, locked.headers["retry-after"],
                          strip_request_id(locked.json()))
    assert answers["ada@example.com"] == answers["nobody@example.com"]
    assert answers["ada@example.com"][:3] == ([401, 401, 401], 429, "600")
    clock.advance(seconds=600)
    assert api.login("nobody@example.com", "Wrong-password-1").status_code == 401
    assert api.login("ada@example.com").status_code == 200


def test_lockout_and_failures_are_audited_without_the_password(make_kernel, make_api):
    api = make_api(make_kernel(lockout_threshold=2))
    pair = api.register()
    user_id = api.me(pair["access_token"])["id"]
    api.login(password="Secret-guess-1")
    api.login("nobody@example.com", "Secret-guess-2")
    api.login(password="Secret-guess-3")
    api.login()
    failures = [e for e in api.audit("auth.login") if e["outcome"] == "failure"]
    assert [(e["actor_id"], e["details"]["reason"]) for e in failures] == [
        (user_id, "invalid_credentials"), (None, "invalid_credentials"), (user_id, "invalid_credentials"),
        (user_id, "account_locked")]
    assert failures[1]["actor_label"] == "nobody@example.com" and failures[0]["ip"] == "testclient"
    [lock] = api.audit("auth.account_locked")
    assert lock["actor_id"] == user_id and lock["details"]["failures"] == 2
    text = str(api.audit())
    assert "Secret-guess" not in text and api.PASSWORD not in text


def test_successful_sign_ins_are_audited(api):
    pair = api.register()
    api.login()
    user_id = api.me(pair["access_token"])["id"]
    logins = api.audit("auth.login")
    assert [(e["actor_id"], e["outcome"], e["details"]["via"]) for e in logins] == [
        (user_id, "success", "register"), (user_id, "success", "login")]


def test_per_ip_throttle_spans_addresses(make_kernel, make_api, clock):
    api = make_api(make_kernel(ip_max_failures=4, ip_window=300))
    api.register()
    for number in range(4):
        assert api.login(f"user{number}@example.com", "Wrong-password-1").status_code == 401
    throttled = api.login()  # a right password from a throttled address waits too
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "too_many_attempts"
    assert throttled.headers["retry-after"] == "300"
    assert api.audit("auth.login")[-1]["details"]["reason"] == "ip_throttled"
    clock.advance(seconds=300)
    assert api.login().status_code == 200


def test_hash_is_upgraded_when_argon2_parameters_change(make_kernel, make_api, kernel, api):
    api.register()
    with kernel.session() as session:
        before = session.scalars(select(PasswordCredential)).one().password_hash
    assert "m=8,t=1,p=1" in before
    stronger = make_api(make_kernel(argon2_time_cost=2, argon2_memory_cost=16, argon2_parallelism=1))
    assert stronger.login(password="Wrong-password-1").status_code == 401
    with kernel.session() as session:  # a failed sign-in does not rehash
        assert session.scalars(select(PasswordCredential)).one().password_hash == before
    assert stronger.login().status_code == 200
    with kernel.session() as session:
        after = session.scalars(select(PasswordCredential)).one().password_hash
    assert "m=16,t=2,p=1" in after and after != before
    assert stronger.login().status_code == 200 and api.login().status_code == 200
    assert stronger.audit("auth.login")[-3]["details"].get("rehashed") is True


def test_production_defaults_are_argon2_cffi_defaults(make_kernel):
    import vendo_auth_password
    from vendo_auth_password.hashing import Passwords
    from vendo_auth_password.settings import PasswordSettings

    hasher = Passwords(PasswordSettings())._hasher
    default = PasswordHasher()
    assert (hasher.time_cost, hasher.memory_cost, hasher.parallelism, hasher.type) == (
        default.time_cost, default.memory_cost, default.parallelism, default.type)
    service = vendo_auth_password.service_for(make_kernel())
    assert service.passwords._hasher.memory_cost == 8  # what the tests configure


def test_invalid_argon2_settings_fail_the_plugin_with_a_message():
    import vendo_auth_password
    from vendo.config import load_settings
    from vendo.kernel import Kernel

    kernel = Kernel(load_settings(overrides={"plugins": {"autoload": False}},
                                  plugin_settings={"auth-password": {"argon2_memory_cost": 8}}),
                    plugins={"auth-password": vendo_auth_password}).load()
    info = kernel.plugin("auth-password")
    assert info.status == "failed" and "argon2_memory_cost" in info.error


def test_missing_fields_are_validation_errors(api):
    response = api.post("/auth/login", {"email": "ada@example.com"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"
