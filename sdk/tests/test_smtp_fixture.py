"""vendo-sdk's ``vendo_smtp_server`` fixture: a real SMTP server that keeps what it receives."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

import pytest


def _message(body: str = "hello") -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", "hi"
    message.set_content(body)
    return message


def test_plain_server_keeps_parsed_messages(vendo_smtp_server) -> None:
    server = vendo_smtp_server()
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.send_message(_message("first"))
    [received] = server.messages
    assert received.rcpt_tos == ["b@example.com"] and received.message["Subject"] == "hi"
    assert received.message.get_content().strip() == "first" and not received.tls
    assert server.settings()["host"] == "127.0.0.1" and server.settings(port=1)["port"] == 1


def test_starttls_with_auth_and_scripted_failures(vendo_smtp_server) -> None:
    server = vendo_smtp_server(tls="starttls", users={"u": "p"})
    server.fail_next = ["451 4.3.0 later"]
    context = ssl.create_default_context(cafile=str(server.cafile))
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.starttls(context=context)
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("u", "wrong")
        client.login("u", "p")
        with pytest.raises(smtplib.SMTPDataError):
            client.send_message(_message())
        client.send_message(_message())
    assert server.attempts == 2 and len(server.messages) == 1
    assert server.messages[0].tls and server.messages[0].authenticated
    assert ("u", True) in server.logins and ("u", False) in server.logins


def test_unknown_tls_mode_is_refused(vendo_smtp_server) -> None:
    with pytest.raises(ValueError, match="tls must be"):
        vendo_smtp_server(tls="tls")
