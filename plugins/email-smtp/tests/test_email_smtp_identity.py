"""End to end over SMTP (SQLite and PostgreSQL): the emails the kernel and vendo-auth-password
request arrive, and the link they carry is the one that works (invitation accepted, password
reset, address verified), while the outbox rows hold no token: the links travel sealed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select

import vendo_auth_password
from vendo.outbox import OutboxEvent

CHEAP_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_cost": 8, "argon2_parallelism": 1}
SECRET_KEY = "email-smtp-tests-master-secret-0123456789abcdef"  # conftest's master secret


def stored(kernel: Any) -> str:
    """Every outbox row's payload as the database holds it (what a dump shows), as JSON text."""
    with kernel.session() as session:
        return json.dumps([row.payload for row in session.scalars(select(OutboxEvent))])


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def link_in(text: str, prefix: str) -> str:
    [url] = re.findall(re.escape(prefix) + r"\S+", text)
    return url


async def test_invitation_email_carries_the_working_link(make_kernel, smtp_server):
    server = smtp_server()
    kernel = make_kernel(server.settings(), public_url="https://app.qoredb.test")
    with kernel.session() as session:
        ada = kernel.identity.create_user(session, "ada@example.com", name="Ada")
        team = kernel.identity.create_workspace(session, ada.id, "Engines")
        _invitation, token = kernel.identity.invite(session, ada.id, team.id, "eve@example.com", "MEMBER")
    assert token.startswith("vinv_") and token not in stored(kernel) and token[5:] not in stored(kernel)
    assert "invitations/accept?token=" not in stored(kernel), "the accept link is sealed"
    assert await kernel.outbox.drain() == 1
    assert token not in stored(kernel), "nothing written back in clear after the send"
    [received] = server.messages
    assert received.message["To"] == "eve@example.com"
    assert received.message["Subject"] == "Ada invited you to join Engines"
    text = received.message.get_body(("plain",)).get_content()
    url = link_in(text, "https://app.qoredb.test/invitations/accept?token=")
    assert token_of(url) == token and url in received.message.get_body(("html",)).get_content()
    with kernel.session() as session:
        eve = kernel.identity.create_user(session, "eve@example.com")
        joined = kernel.identity.accept_invitation(session, eve.id, token_of(url))
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
    assert "reset-password?token=" not in stored(kernel), "the reset link is sealed"
    assert await kernel.outbox.drain() == 1
    [received] = server.messages
    assert received.message["Subject"] == "Reset your password"
    text = received.message.get_body(("plain",)).get_content()
    assert "for 60 minutes" in text
    token = token_of(link_in(text, "https://app.qoredb.test/reset-password?token="))
    assert token.startswith("vpr_") and token not in stored(kernel)
    reset = client.post("/api/v1/auth/password/reset", json={"token": token, "password": "New-Secret-Pass-9"})
    assert reset.status_code == 204
    assert client.post("/api/v1/auth/login", json={"email": "ada@example.com",
                                                   "password": "New-Secret-Pass-9"}).status_code == 200


async def test_verification_email_verifies_the_address(make_kernel, smtp_server, vendo_client):
    server = smtp_server()
    kernel = make_kernel(server.settings(), public_url="https://app.qoredb.test",
                         plugins={"auth-password": vendo_auth_password}, other_settings={"auth-password": CHEAP_ARGON2})
    client: Any = vendo_client(kernel)
    registered = client.post("/api/v1/auth/register", json={"email": "ada@example.com", "password": "Correct-Horse-42"})
    assert registered.status_code == 201
    assert "verify-email?token=" not in stored(kernel), "the verification link is sealed"
    assert await kernel.outbox.drain() == 1
    [received] = server.messages
    text = received.message.get_body(("plain",)).get_content()
    token = token_of(link_in(text, "https://app.qoredb.test/verify-email?token="))
    assert token.startswith("vev_") and token not in stored(kernel)
    headers = {"Authorization": f"Bearer {registered.json()['access_token']}"}
    assert client.get("/api/v1/me", headers=headers).json()["email_verified"] is False
    assert client.post("/api/v1/auth/email/verify", json={"token": token}).status_code == 204
    assert client.get("/api/v1/me", headers=headers).json()["email_verified"] is True


def _in_clear(kernel: Any) -> None:
    """Rewrite every notification row as versions before sealed links stored it: the secret
    values back in the clear context, no ``sealed`` field."""
    with kernel.session() as session:
        for row in session.scalars(select(OutboxEvent).where(OutboxEvent.type == "notification.requested")):
            payload = {k: v for k, v in row.payload.items() if k != "sealed"}
            row.payload = {**payload, "context": kernel.notifications.context_of(row.payload)}


async def test_links_an_older_version_stored_in_clear_are_sealed_and_still_work(
        make_kernel, smtp_server, vendo_client, database_url, tmp_path) -> None:
    """`vendo outbox seal` (a real process, once after upgrading) seals the invitation and
    reset links left in clear; the emails then sent carry the working links."""
    server = smtp_server()
    kernel = make_kernel(server.settings(), public_url="https://app.qoredb.test",
                         plugins={"auth-password": vendo_auth_password},
                         other_settings={"auth-password": {**CHEAP_ARGON2, "send_verification_on_register": False}})
    client: Any = vendo_client(kernel)
    assert client.post("/api/v1/auth/register", json={"email": "ada@example.com",
                                                      "password": "Correct-Horse-42"}).status_code == 201
    assert client.post("/api/v1/auth/password/forgot", json={"email": "ada@example.com"}).status_code == 202
    with kernel.session() as session:
        ada = kernel.identity.user_by_email(session, "ada@example.com")
        team = kernel.identity.create_workspace(session, ada.id, "Engines")
        _invitation, token = kernel.identity.invite(session, ada.id, team.id, "eve@example.com", "MEMBER")
    _in_clear(kernel)
    assert token in stored(kernel) and "reset-password?token=vpr_" in stored(kernel)

    environment = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_") or k.startswith("VENDO_TEST_")}
    environment.update({"VENDO_PLUGINS__ENABLED": "email-smtp,auth-password", "VENDO_DATABASE_URL": database_url,
                        "VENDO_SECRET_KEY": SECRET_KEY, "VENDO_DATA_DIR": str(tmp_path / "data")})
    sealed = subprocess.run([sys.executable, "-m", "vendo", "outbox", "seal"], capture_output=True, text=True,
                            cwd=Path(tmp_path), env=environment, timeout=120)
    assert sealed.returncode == 0, sealed.stderr
    assert "1 invitation notification(s) sealed (accept_url)" in sealed.stdout
    assert "1 password_reset notification(s) sealed (reset_url)" in sealed.stdout
    assert token not in sealed.stdout + sealed.stderr
    assert token not in stored(kernel) and "reset-password?token=" not in stored(kernel)

    assert await kernel.outbox.drain() == 2
    bodies = {m.message["To"]: m.message.get_body(("plain",)).get_content() for m in server.messages}
    accept = token_of(link_in(bodies["eve@example.com"], "https://app.qoredb.test/invitations/accept?token="))
    reset = token_of(link_in(bodies["ada@example.com"], "https://app.qoredb.test/reset-password?token="))
    assert accept == token
    assert client.post("/api/v1/auth/password/reset", json={"token": reset,
                                                            "password": "New-Secret-Pass-9"}).status_code == 204
    with kernel.session() as session:
        eve = kernel.identity.create_user(session, "eve@example.com")
        assert kernel.identity.accept_invitation(session, eve.id, accept)["id"] == team.id
