"""The SMTP transport: Python's ``smtplib`` run in a worker thread.

Why stdlib ``smtplib`` rather than ``aiosmtplib``: it adds no dependency, supports
STARTTLS, implicit TLS and AUTH, and transactional email is low volume; running it in a
thread (``anyio.to_thread``) keeps the event loop free while a server is slow. One
connection per message keeps failures independent (a retry starts clean).

Nothing here logs: neither the password (``smtplib``'s debug output, which would print the
AUTH exchange, stays off) nor the message.
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from email.message import EmailMessage as MIMEMessage
from email.utils import formatdate

import anyio.to_thread
from vendo import EmailMessage

from vendo_email_smtp.settings import SMTPSettings


def message_id(idempotency_key: str, domain: str) -> str:
    """The Message-ID of a notification: the same key always gives the same id, so a
    message sent again after a lost answer is recognisable (and de-duplicated by clients
    and servers that honour Message-ID)."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:40]
    return f"<vendo.{digest}@{domain}>"


def to_mime(message: EmailMessage, settings: SMTPSettings) -> MIMEMessage:
    """The wire form: text, with an HTML alternative when there is one."""
    mime = MIMEMessage()
    mime["From"] = settings.from_address
    mime["To"] = message.to
    mime["Subject"] = message.subject
    mime["Date"] = formatdate(localtime=False)
    if settings.reply_to:
        mime["Reply-To"] = settings.reply_to
    for name, value in message.headers.items():
        mime[name] = value
    mime.set_content(message.text)
    if message.html is not None:
        mime.add_alternative(message.html, subtype="html")
    return mime


def _tls_context(settings: SMTPSettings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)


def send_sync(mime: MIMEMessage, settings: SMTPSettings) -> None:
    """Connect, secure, authenticate and send one message; raise on any failure.

    :raises smtplib.SMTPException: the server refused (recipient, AUTH, data...).
    :raises OSError: the server cannot be reached, or TLS failed.
    """
    assert settings.host is not None
    if settings.security == "ssl":
        client: smtplib.SMTP = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout,
                                                context=_tls_context(settings))
    else:
        client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    with client:
        client.ehlo()
        if settings.security == "starttls":
            client.starttls(context=_tls_context(settings))
            client.ehlo()
        if settings.username is not None and settings.password is not None:
            client.login(settings.username, settings.password.get_secret_value())
        refused = client.send_message(mime)
        if refused:  # one recipient: a refusal raises SMTPRecipientsRefused; this is belt and braces
            raise smtplib.SMTPRecipientsRefused(refused)


async def send(message: EmailMessage, settings: SMTPSettings) -> None:
    """Send ``message`` without blocking the event loop."""
    mime = to_mime(message, settings)
    await anyio.to_thread.run_sync(send_sync, mime, settings)
