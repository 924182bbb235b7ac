"""Password change, forgotten password and reset, with tokens read from the outbox (where
their links are sealed: opened as the notifier does)."""

from __future__ import annotations

from sqlalchemy import select
from vendo_auth_password.models import SingleUseToken

NEW_PASSWORD = "Brand-New-Secret-9"


def test_forgot_answers_the_same_whether_the_account_exists(api, strip_request_id):
    api.register()
    known = api.post("/auth/password/forgot", {"email": "ada@example.com"})
    unknown = api.post("/auth/password/forgot", {"email": "nobody@example.com"})
    malformed = api.post("/auth/password/forgot", {"email": "not an address"})
    assert known.status_code == unknown.status_code == malformed.status_code == 202
    assert known.json() == unknown.json() == malformed.json()
    [event] = api.events("auth.password_reset.requested")
    assert set(event["payload"]) == {"user_id", "email", "token_id", "expires_at"}
    assert event["payload"]["email"] == "ada@example.com"
    [mail] = api.mails("password_reset")
    assert mail["to"] == "ada@example.com" and mail["idempotency_key"] == f"password_reset:{event['payload']['token_id']}"
    assert mail["context"]["expires_minutes"] == 60
    assert mail["context"]["reset_url"].startswith("http://127.0.0.1:8000/reset-password?token=vpr_")


def test_reset_flow_with_the_token_from_the_outbox(api, kernel, clock):
    first = api.register()
    user_id = api.me(first["access_token"])["id"]
    api.post("/auth/password/forgot", {"email": "ADA@example.com"})
    [event] = api.events("auth.password_reset.requested")
    payload = event["payload"]
    token = api.last_token("auth.password_reset.requested")
    assert payload["user_id"] == user_id and token.startswith("vpr_")
    assert token not in str(payload), "the domain event never carries the token"
    assert payload["expires_at"] == "2026-01-01T01:00:00+00:00"  # reset_token_ttl = 1 h at the kernel clock

    assert api.post("/auth/password/reset", {"token": token, "password": NEW_PASSWORD}).status_code == 204
    assert api.login().status_code == 401
    assert api.login(password=NEW_PASSWORD).status_code == 200
    # every session ended, and the email counts as verified (the link proved it)
    assert api.post("/auth/refresh", {"refresh_token": first["refresh_token"]}).status_code == 401
    assert api.me(api.login(password=NEW_PASSWORD).json()["access_token"])["email_verified"] is True
    assert [e["payload"]["via"] for e in api.events("auth.password.changed")] == ["reset"]

    used = api.post("/auth/password/reset", {"token": token, "password": "Another-Secret-77"})
    assert used.status_code == 410 and used.json()["error"]["code"] == "token_used"
    with kernel.session() as session:  # stored as a keyed hash, never as is
        row = session.scalars(select(SingleUseToken).where(SingleUseToken.purpose == "reset")).one()
    assert token not in row.token_hash and len(row.token_hash) == 64


def test_expired_reset_token_is_410(api, clock):
    api.register()
    api.post("/auth/password/forgot", {"email": "ada@example.com"})
    token = api.last_token("auth.password_reset.requested")
    clock.advance(seconds=3600)
    response = api.post("/auth/password/reset", {"token": token, "password": NEW_PASSWORD})
    assert response.status_code == 410 and response.json()["error"]["code"] == "token_expired"
    assert api.login().status_code == 200


def test_unknown_or_foreign_tokens_are_400_invalid_token(api):
    api.register()
    for token in ("vpr_not-a-real-token", "nonsense", api.last_token("auth.email_verification.requested")):
        response = api.post("/auth/password/reset", {"token": token, "password": NEW_PASSWORD})
        assert response.status_code == 400, token
        assert response.json()["error"]["code"] == "invalid_token"
    assert [e["details"]["reason"] for e in api.audit("auth.password_reset")] == ["invalid_token"] * 3


def test_invalid_tokens_count_against_the_ip(make_kernel, make_api):
    api = make_api(make_kernel(ip_max_failures=3))
    for number in range(3):
        api.post("/auth/password/reset", {"token": f"vpr_guess{number}", "password": NEW_PASSWORD})
    response = api.post("/auth/email/verify", {"token": "vev_guess"})
    assert response.status_code == 429 and response.json()["error"]["code"] == "too_many_attempts"


def test_weak_new_password_keeps_the_token_usable(api):
    api.register()
    api.post("/auth/password/forgot", {"email": "ada@example.com"})
    token = api.last_token("auth.password_reset.requested")
    weak = api.post("/auth/password/reset", {"token": token, "password": "short"})
    assert weak.status_code == 422 and weak.json()["error"]["details"]["rule"] == "min_length"
    assert api.post("/auth/password/reset", {"token": token, "password": NEW_PASSWORD}).status_code == 204


def test_a_new_request_replaces_the_previous_link_and_requests_are_spaced(api, clock):
    api.register()
    api.post("/auth/password/forgot", {"email": "ada@example.com"})
    api.post("/auth/password/forgot", {"email": "ada@example.com"})  # within a minute: no second email
    assert len(api.events("auth.password_reset.requested")) == 1
    old = api.last_token("auth.password_reset.requested")
    clock.advance(seconds=60)
    assert api.post("/auth/password/forgot", {"email": "ada@example.com"}).status_code == 202
    assert len(api.events("auth.password_reset.requested")) == 2
    new = api.last_token("auth.password_reset.requested")
    assert api.post("/auth/password/reset", {"token": old, "password": NEW_PASSWORD}).status_code == 400
    assert api.post("/auth/password/reset", {"token": new, "password": NEW_PASSWORD}).status_code == 204


def test_reset_requests_are_limited_per_ip(make_kernel, make_api, clock):
    api = make_api(make_kernel(ip_max_reset_requests=2, ip_window=60))
    for email in ("a@example.com", "b@example.com"):
        assert api.post("/auth/password/forgot", {"email": email}).status_code == 202
    response = api.post("/auth/password/forgot", {"email": "c@example.com"})
    assert response.status_code == 429 and response.headers["retry-after"] == "60"
    clock.advance(seconds=60)
    assert api.post("/auth/password/forgot", {"email": "c@example.com"}).status_code == 202


def test_reset_unlocks_a_locked_account(make_kernel, make_api):
    api = make_api(make_kernel(lockout_threshold=2))
    api.register()
    for _ in range(2):
        api.login(password="Wrong-password-1")
    assert api.login().status_code == 429
    api.post("/auth/password/forgot", {"email": "ada@example.com"})
    api.post("/auth/password/reset", {"token": api.last_token("auth.password_reset.requested"),
                                      "password": NEW_PASSWORD})
    assert api.login(password=NEW_PASSWORD).status_code == 200


def test_change_password_revokes_other_sessions_and_returns_a_new_pair(api):
    first = api.register()
    other = api.login().json()
    response = api.post("/auth/password/change", {"current_password": api.PASSWORD, "new_password": NEW_PASSWORD},
                        token=first["access_token"])
    assert response.status_code == 200
    fresh = response.json()
    for pair in (first, other):
        assert api.post("/auth/refresh", {"refresh_token": pair["refresh_token"]}).status_code == 401
    assert api.post("/auth/refresh", {"refresh_token": fresh["refresh_token"]}).status_code == 200
    assert api.login().status_code == 401 and api.login(password=NEW_PASSWORD).status_code == 200
    [event] = api.events("auth.password.changed")
    assert event["payload"]["via"] == "change" and "token" not in event["payload"]
    assert api.audit("auth.password_changed")[0]["outcome"] == "success"


def test_change_password_checks_the_current_one_and_the_policy(make_kernel, make_api):
    api = make_api(make_kernel(lockout_threshold=2))
    token = api.register()["access_token"]
    wrong = api.post("/auth/password/change", {"current_password": "Wrong-password-1", "new_password": NEW_PASSWORD},
                     token=token)
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "wrong_password"
    weak = api.post("/auth/password/change", {"current_password": api.PASSWORD, "new_password": "password123"},
                    token=token)
    assert weak.status_code == 422 and weak.json()["error"]["details"]["rule"] == "common_password"
    same = api.post("/auth/password/change", {"current_password": api.PASSWORD, "new_password": api.PASSWORD},
                    token=token)
    assert same.status_code == 422 and same.json()["error"]["details"]["rule"] == "same_as_current"
    api.post("/auth/password/change", {"current_password": "Wrong-password-2", "new_password": NEW_PASSWORD},
             token=token)  # the second wrong password locks the account
    locked = api.post("/auth/password/change", {"current_password": api.PASSWORD, "new_password": NEW_PASSWORD},
                      token=token)
    assert locked.status_code == 429 and locked.json()["error"]["code"] == "account_locked"
    assert [e["details"]["reason"] for e in api.audit("auth.password_change")] == [
        "wrong_password", "wrong_password", "account_locked"]


def test_change_password_needs_a_signed_in_user(api):
    response = api.post("/auth/password/change", {"current_password": "a", "new_password": "b"})
    assert response.status_code == 401


def test_user_without_a_password_sets_one_by_reset(api, kernel):
    with kernel.session() as session:  # e.g. created by another auth plugin
        user = kernel.identity.create_user(session, "grace@example.com", method="oidc")
    assert api.login("grace@example.com", NEW_PASSWORD).json()["error"]["code"] == "invalid_credentials"
    token = api.register("ada@example.com")["access_token"]
    assert api.post("/auth/password/forgot", {"email": "grace@example.com"}).status_code == 202
    reset = api.last_token("auth.password_reset.requested")
    assert api.post("/auth/password/reset", {"token": reset, "password": NEW_PASSWORD}).status_code == 204
    signed_in = api.login("grace@example.com", NEW_PASSWORD)
    assert signed_in.status_code == 200 and api.me(signed_in.json()["access_token"])["id"] == user.id
    assert token  # ada is unaffected


def test_a_reset_token_works_once_even_when_used_concurrently(api, kernel):
    from concurrent.futures import ThreadPoolExecutor

    import vendo_auth_password
    from vendo_auth_password.errors import Gone

    api.register()
    api.post("/auth/password/forgot", {"email": "ada@example.com"})
    token = api.last_token("auth.password_reset.requested")
    service = vendo_auth_password.service_for(kernel)

    def use(password):
        try:
            service.reset_password(token, password)
            return password
        except Gone as exc:
            return exc.code

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(use, [f"Concurrent-Secret-{n}" for n in range(4)]))
    winners = [o for o in outcomes if o.startswith("Concurrent")]
    assert len(winners) == 1 and sorted(o for o in outcomes if o not in winners) == ["token_used"] * 3
    assert api.login(password=winners[0]).status_code == 200
    assert len(api.events("auth.password.changed")) == 1


def test_email_links_follow_the_settings(make_kernel, make_api):
    api = make_api(make_kernel(reset_url="https://id.example.com/r/{token}",
                               verify_email_url="{public_url}/welcome/verify?t={token}"))
    api.register()
    api.post("/auth/password/forgot", {"email": "ada@example.com"})
    mails = {mail["template"]: mail["context"] for mail in api.mails()}
    assert mails["password_reset"]["reset_url"].startswith("https://id.example.com/r/vpr_")
    reset = mails["password_reset"]["reset_url"].rsplit("/", 1)[1]
    assert api.post("/auth/password/reset", {"token": reset, "password": NEW_PASSWORD}).status_code == 204
    assert mails["email_verification"]["verify_url"].startswith("http://127.0.0.1:8000/welcome/verify?t=vev_")
    assert mails["email_verification"]["expires_minutes"] == 2 * 24 * 60


def test_a_link_without_the_token_fails_the_plugin(make_kernel):
    kernel = make_kernel(reset_url="https://id.example.com/reset")
    info = kernel.plugin("auth-password")
    assert info.status == "failed" and "reset_url" in info.error and "{token}" in info.error
