"""Email verification: a token sent through the outbox, verified once."""

from __future__ import annotations

import asyncio


def test_verification_flow(api, kernel):
    token = api.register()["access_token"]
    assert api.me(token)["email_verified"] is False
    verify = api.last_token("auth.email_verification.requested")  # sent at registration
    assert verify.startswith("vev_")
    assert api.post("/auth/email/verify", {"token": verify}).status_code == 204
    assert api.me(token)["email_verified"] is True
    again = api.post("/auth/email/verify", {"token": verify})
    assert again.status_code == 410 and again.json()["error"]["code"] == "token_used"
    [entry] = api.audit("auth.email_verified")
    assert entry["actor_id"] == api.me(token)["id"]


def test_request_sends_a_new_token(make_kernel, make_api, clock):
    api = make_api(make_kernel(send_verification_on_register=False))
    token = api.register()["access_token"]
    assert api.events("auth.email_verification.requested") == []
    response = api.post("/auth/email/verify/request", token=token)
    assert response.status_code == 202
    assert response.json() == {"email": "ada@example.com", "expires_at": "2026-01-03T00:00:00+00:00"}
    soon = api.post("/auth/email/verify/request", token=token)
    assert soon.status_code == 429 and soon.json()["error"]["code"] == "too_many_requests"
    assert soon.headers["retry-after"] == "60"
    clock.advance(seconds=60)
    assert api.post("/auth/email/verify/request", token=token).status_code == 202
    first, second = api.tokens("auth.email_verification.requested")
    assert api.post("/auth/email/verify", {"token": first}).status_code == 400  # replaced by the second
    assert api.post("/auth/email/verify", {"token": second}).status_code == 204
    done = api.post("/auth/email/verify/request", token=token)
    assert done.status_code == 409 and done.json()["error"]["code"] == "already_verified"


def test_expired_and_unknown_verification_tokens(api, clock):
    api.register()
    verify = api.last_token("auth.email_verification.requested")
    clock.advance(days=2)
    expired = api.post("/auth/email/verify", {"token": verify})
    assert expired.status_code == 410 and expired.json()["error"]["code"] == "token_expired"
    unknown = api.post("/auth/email/verify", {"token": "vev_unknown"})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "invalid_token"


def test_request_needs_a_signed_in_user(api):
    assert api.post("/auth/email/verify/request").status_code == 401


def test_token_events_reach_subscribers(api, kernel):
    """The notifier will receive the events through the outbox (shown by `vendo outbox list`)."""
    api.register()
    api.post("/auth/password/forgot", {"email": "ada@example.com"})
    asyncio.run(kernel.outbox.drain())
    mailbox = kernel.pm.get_plugin("mailbox")
    received = [(e.type, e.payload["email"]) for e in mailbox.events if e.type.startswith("auth.")]
    assert received == [("auth.email_verification.requested", "ada@example.com"),
                        ("auth.password_reset.requested", "ada@example.com")]
    listed = {row["type"] for row in kernel.outbox.list(status="delivered")}
    assert {"auth.email_verification.requested", "auth.password_reset.requested"} <= listed
