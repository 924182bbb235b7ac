"""GDPR export and erasure, and secrets kept out of responses, the outbox, the audit log and logs."""

from __future__ import annotations

import json
import logging

import pyotp
from sqlalchemy import func, select
from vendo_auth_password.models import Attempt, PasswordCredential, RecoveryCode, SingleUseToken

NEW_PASSWORD = "Brand-New-Secret-9"
TABLES = (PasswordCredential, SingleUseToken, RecoveryCode, Attempt)


def counts(kernel):
    with kernel.session() as session:
        return {model.__tablename__: session.scalar(select(func.count()).select_from(model)) for model in TABLES}


def test_export_says_secrets_exist_without_showing_them(api, clock):
    token = api.register()["access_token"]
    secret = api.post("/auth/2fa/setup", token=token).json()["secret"]
    codes = api.post("/auth/2fa/enable", {"code": pyotp.TOTP(secret).at(clock.now.timestamp())},
                     token=token).json()["recovery_codes"]
    response = api.get("/me/export", token)
    assert response.status_code == 200
    section = response.json()["plugins"]["auth-password"]
    assert section["password"]["set"] is True and section["password"]["failed_attempts"] == 0
    assert section["two_factor"] == {"totp_enabled": True, "enabled_at": "2026-01-01T00:00:00+00:00",
                                     "totp_secret_stored": True, "recovery_codes_left": 10}
    assert [t["purpose"] for t in section["email_tokens"]] == ["verify_email"]
    text = response.text
    assert "$argon2" not in text and secret not in text and "hash" not in text
    assert not any(code in text for code in codes)
    assert api.last_token("auth.email_verification.requested") not in text


def test_export_of_a_user_without_password_has_no_section(api, kernel):
    with kernel.session() as session:
        user = kernel.identity.create_user(session, "grace@example.com")
        document = kernel.identity.export_user(session, user.id)
    assert "auth-password" not in document["plugins"]


def test_erasure_deletes_every_row_of_the_user(api, kernel, clock):
    api.login("ada@example.com", "Wrong-password-1")  # failures on the address before it had an account
    other = api.register("bob@example.com")["access_token"]
    token = api.register()["access_token"]
    secret = api.post("/auth/2fa/setup", token=token).json()["secret"]
    api.post("/auth/2fa/enable", {"code": pyotp.TOTP(secret).at(clock.now.timestamp())}, token=token)
    api.post("/auth/password/forgot", {"email": "ada@example.com"})
    before = counts(kernel)
    assert before["auth_password_recovery_codes"] == 10 and before["auth_password_tokens"] == 3
    response = api.client.delete("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 204
    after = counts(kernel)
    assert after == {"auth_password_credentials": 1, "auth_password_tokens": 1,  # bob's
                     "auth_password_recovery_codes": 0, "auth_password_attempts": after["auth_password_attempts"]}
    with kernel.session() as session:
        subjects = session.scalars(select(Attempt.subject).where(Attempt.subject.is_not(None))).all()
    assert subjects == []
    assert api.login().json()["error"]["code"] == "invalid_credentials"
    assert api.me(other)["email"] == "bob@example.com"


def test_secrets_stay_where_they_belong(api, kernel, clock, caplog):
    """Passwords, TOTP seeds, recovery codes and email tokens never show up after the answer
    that creates them: not in later responses, the outbox (the email carrying a token seals it),
    the audit log or the logs."""
    caplog.set_level(logging.DEBUG)
    responses: list[str] = []

    def post(path, body=None, token=None):
        response = api.post(path, body, token)
        responses.append(response.text)
        return response

    pair = api.register()  # the registration answer holds tokens, nothing else secret
    access = pair["access_token"]
    post("/auth/login", {"email": "ada@example.com", "password": "Wrong-guess-123"})
    post("/auth/login", {"email": "nobody@example.com", "password": "Wrong-guess-456"})
    setup = api.post("/auth/2fa/setup", token=access).json()
    enabled = api.post("/auth/2fa/enable", {"code": pyotp.TOTP(setup["secret"]).at(clock.now.timestamp())},
                       token=access).json()
    clock.advance(seconds=30)
    post("/auth/login", {"email": "ada@example.com", "password": api.PASSWORD,
                         "totp_code": pyotp.TOTP(setup["secret"]).at(clock.now.timestamp())})
    post("/auth/login", {"email": "ada@example.com", "password": api.PASSWORD,
                         "recovery_code": enabled["recovery_codes"][0]})
    post("/auth/password/forgot", {"email": "ada@example.com"})
    reset = api.last_token("auth.password_reset.requested")
    post("/auth/password/reset", {"token": reset, "password": NEW_PASSWORD})
    post("/auth/password/reset", {"token": reset, "password": NEW_PASSWORD})
    access = post("/auth/login", {"email": "ada@example.com", "password": NEW_PASSWORD, "recovery_code":
                                  enabled["recovery_codes"][1]}).json()["access_token"]
    verify = api.last_token("auth.email_verification.requested")
    post("/auth/email/verify", {"token": verify})
    post("/auth/password/change", {"current_password": NEW_PASSWORD, "new_password": "Third-Secret-Pass-5"},
         token=access)
    responses.append(api.get("/me/export", access).text)

    tokens = {"reset": reset, "verify": verify}
    secrets = {"password": api.PASSWORD, "new password": NEW_PASSWORD, "third password": "Third-Secret-Pass-5",
               "guess": "Wrong-guess-123", "other guess": "Wrong-guess-456", "totp seed": setup["secret"],
               **{f"recovery code {i}": code for i, code in enumerate(enabled["recovery_codes"])}, **tokens}
    audit = json.dumps(api.audit())
    logs = caplog.text
    events = api.events()
    for name, secret in secrets.items():
        assert not any(secret in text for text in responses), f"{name} in a response"
        assert secret not in audit, f"{name} in the audit log"
        assert secret not in logs, f"{name} in the logs"
        for event in events:
            # nowhere in clear: the email's link carrying a token is sealed
            assert secret not in json.dumps(event["payload"]), f"{name} in outbox event {event['type']}"
    for name, token in tokens.items():  # only the notifier's view (the sealed context) holds it
        holders = [e["payload"]["template"] for e in events if e["type"] == "notification.requested"
                   and any(isinstance(value, str) and value.endswith(f"?token={token}")
                           for value in kernel.notifications.context_of(e["payload"]).values())]
        assert holders == [{"reset": "password_reset", "verify": "email_verification"}[name]], name
    token_events = [e for e in events if e["type"].endswith(".requested")]
    assert {e["type"] for e in token_events} == {"auth.password_reset.requested",
                                                 "auth.email_verification.requested", "notification.requested"}
    assert "$argon2" not in audit + logs + json.dumps([e["payload"] for e in events])
