"""End to end over SMTP: the emails the kernel and vendo-auth-password request arrive, and
the link they carry is the one that works (invitation accepted, password reset)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import vendo_auth_password

CHEAP_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_cost": 8, "argon2_parallelism": 1}


def link_in(text: str, prefix: str) -> str:
    [url] = re.findall(re.escape(prefix) + r"\S+", text)
    return url


async def test_invitation_email_carries_the_working_link(make_kernel, smtp_server):
    server = smtp_server()
    kernel = make_kernel(server.settings(), public_url="https://app.qoredb.test")
    with kernel.session() as session:
        ada = kernel.identity.create_user(session, "ada@example.com", name="Ada")
        team = kernel.identity.create_workspace(session, ada.id, "Engines")
        kernel.identity.invite(session, ada.id, team.id, "eve@example.com", "MEMBER")
    assert await kernel.outbox.drain() == 1
    [received] = server.messages
    assert received.message["To"] == "eve@example.com"
    assert received.message["Subject"] == "Ada invited you to join Engines"
    text = received.message.get_body(("plain",)).get_content()
    url = link_in(text, "https://app.qoredb.test/invitations/accept?token=")
    with kernel.session() as session:
        eve = kernel.identity.create_user(session, "eve@example.com")
        joined = kernel.identity.accept_invitation(session, eve.id, parse_qs(urlsplit(url).query)["token"][0])
    assert joined["id"] == team.id


async def test_password_reset_email_resets_the_password(make_kernel, smtp_server, vendo_client):
    server = smtp_server()
    kernel = make_kernel(server.settings(), public_url="https://app.qoredb.test",
                         plugins={"auth-password": vendo_auth_password},
                         other_settings={"auth-password": {**CHEAP_ARGON2, "send_verification_on_register": False}})
    client: Any = vendo_client(kernel)
    assert client.post("/api/v1/auth/register", json={"email": "ada@example.com",
                                                      "password": "Correct-Horse-42"}).status_code == 201
    assert client.post("/api/v1/auth/password/forgot", json={"email": "ada@example.com"}).status_code == 202
    assert await kernel.outbox.drain() == 1
    [received] = server.messages
    assert received.message["Subject"] == "Reset your password"
    text = received.message.get_body(("plain",)).get_content()
    assert "for 60 minutes" in text
    token = parse_qs(urlsplit(link_in(text, "https://app.qoredb.test/reset-password?token=")).query)["token"][0]
    reset = client.post("/api/v1/auth/password/reset", json={"token": token, "password": "New-Secret-Pass-9"})
    assert reset.status_code == 204
    assert client.post("/api/v1/auth/login", json={"email": "ada@example.com",
                                                   "password": "New-Secret-Pass-9"}).status_code == 200
