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


def test_no_outbox_row_or_subscriber_sees_a_reset_or_verification_token(api, kernel):
    """Both links travel sealed: the stored rows, `vendo outbox list/show` and plugins
    subscribing to the outbox never see a token; the notifier's view holds the working link."""
    import json

    api.register()
    api.post("/auth/password/forgot", {"email": "ada@example.com"})
    tokens = [api.last_token("auth.email_verification.requested"), api.last_token("auth.password_reset.requested")]
    assert [t[:4] for t in tokens] == ["vev_", "vpr_"]
    stored = json.dumps([event["payload"] for event in api.events()])
    listed = json.dumps([kernel.outbox.event(row["event_id"]) for row in kernel.outbox.events()])
    for token in tokens:
        assert token not in stored and token[4:] not in stored and token not in listed
    mails = {mail["template"]: mail for mail in (e["payload"] for e in api.events("notification.requested"))}
    assert mails["email_verification"]["context"] == {"expires_minutes": 2 * 24 * 60}
    assert mails["password_reset"]["context"] == {"expires_minutes": 60}
    assert all(isinstance(mail["sealed"], str) for mail in mails.values())

    asyncio.run(kernel.outbox.drain())
    delivered = json.dumps([e.payload for e in kernel.pm.get_plugin("mailbox").events])
    assert all(token not in delivered for token in tokens), "subscribers get the sealed payload"
    verify, reset = tokens
    assert api.post("/auth/email/verify", {"token": verify}).status_code == 204
    assert api.post("/auth/password/reset", {"token": reset, "password": "Brand-New-Secret-9"}).status_code == 204
    assert api.login(password="Brand-New-Secret-9").status_code == 200
