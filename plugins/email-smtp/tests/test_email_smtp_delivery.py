"""Emails go out through a real SMTP server on loopback (aiosmtpd), from the outbox:
parsed and checked on arrival; AUTH, STARTTLS and implicit TLS; a failing server is
retried by the outbox; one message identity per notification."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from vendo import Notification

LICENSE = {"product": "QoreDB", "tier": "pro", "key": "QDB1.eyJ0aWVyIjoicHJvIn0.SIGNATURE-77", "license_id": "lic_42",
           "expires_at": None}
PASSWORD = "smtp-pa55word-never-logged"


def notify(kernel: Any, key: str = "license:lic_42", **fields: Any) -> Any:
    values = {"to": "ada@example.com", "template": "license_key", "context": LICENSE, **fields}
    with kernel.session() as session:
        return kernel.notify(session, idempotency_key=key, **values)


def only_delivery(kernel: Any, event_id: str) -> dict[str, Any]:
    [delivery] = kernel.outbox.event(event_id)["deliveries"]
    return delivery


async def test_license_key_email_is_delivered_and_parses(make_kernel, smtp_server):
    server = smtp_server()
    kernel = make_kernel(server.settings())
    event = notify(kernel)
    assert await kernel.outbox.drain() == 1
    assert only_delivery(kernel, event.id)["status"] == "delivered"

    [received] = server.messages
    message = received.message
    assert received.rcpt_tos == ["ada@example.com"] and received.mail_from == "licenses@qoredb.test"
    assert message["To"] == "ada@example.com"
    assert message["From"] == "QoreDB <licenses@qoredb.test>"
    assert message["Subject"] == "Your QoreDB license key (pro)"
    assert message["Message-ID"].startswith("<vendo.") and message["Message-ID"].endswith("@qoredb.test>")
    assert message["X-Vendo-Notification"] == event.id
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert LICENSE["key"] in text and LICENSE["key"] in html
    assert "Expires: never (perpetual license)" in text and "lic_42" in text


async def test_auth_over_starttls(make_kernel, smtp_server):
    server = smtp_server(tls="starttls", users={"mailer": PASSWORD})
    kernel = make_kernel(server.settings(security="starttls", username="mailer", password=PASSWORD))
    notify(kernel)
    assert await kernel.outbox.drain() == 1
    [received] = server.messages
    assert received.tls and received.authenticated
    assert server.logins == [("mailer", True)]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_implicit_tls(make_kernel, smtp_server):
    server = smtp_server(tls="ssl", users={"mailer": PASSWORD})
    kernel = make_kernel(server.settings(security="ssl", username="mailer", password=PASSWORD))
    notify(kernel)
    assert await kernel.outbox.drain() == 1
    [received] = server.messages  # the server speaks only TLS: a plain client would have failed
    assert received.authenticated


async def test_an_untrusted_certificate_is_refused(make_kernel, smtp_server):
    """Without the server's CA, TLS fails: the delivery is retried, never sent in clear."""
    server = smtp_server(tls="starttls")
    kernel = make_kernel(server.settings(security="starttls", ca_file=None))
    event = notify(kernel)
    await kernel.outbox.drain()
    delivery = only_delivery(kernel, event.id)
    assert delivery["status"] == "pending" and "CERTIFICATE_VERIFY_FAILED" in delivery["last_error"]
    assert server.messages == []


async def test_wrong_password_is_retried_and_never_logged(make_kernel, smtp_server, caplog):
    caplog.set_level(logging.DEBUG)
    server = smtp_server(tls="starttls", users={"mailer": "the-right-one"})
    kernel = make_kernel(server.settings(security="starttls", username="mailer", password=PASSWORD))
    event = notify(kernel)
    await kernel.outbox.drain()
    delivery = only_delivery(kernel, event.id)
    assert delivery["status"] == "pending" and delivery["attempts"] == 1
    assert delivery["last_error"].startswith("SMTPAuthenticationError: (535")
    assert server.messages == [] and server.logins and set(server.logins) == {("mailer", False)}
    vendo_logs = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("vendo"))
    assert PASSWORD not in vendo_logs and PASSWORD not in delivery["last_error"]
    assert PASSWORD not in repr(kernel.plugin_settings("email-smtp"))


async def test_failing_server_is_retried_by_the_outbox_then_succeeds(make_kernel, smtp_server, clock):
    server = smtp_server()
    server.fail_next = ["451 4.3.0 Mailbox temporarily unavailable", "421 4.7.0 Try again later"]
    kernel = make_kernel(server.settings())
    event = notify(kernel)
    assert await kernel.outbox.drain() == 1
    first = only_delivery(kernel, event.id)
    assert first["status"] == "pending" and "451" in first["last_error"]
    assert await kernel.outbox.drain() == 0, "waits for its backoff"
    clock.advance(seconds=10)
    assert await kernel.outbox.drain() == 1
    assert "421" in only_delivery(kernel, event.id)["last_error"]
    clock.advance(seconds=20)
    assert await kernel.outbox.drain() == 1
    assert only_delivery(kernel, event.id)["status"] == "delivered"
    assert server.attempts == 3 and len(server.messages) == 1


async def test_unreachable_server_ends_dead_after_max_attempts(make_kernel, smtp_server, clock):
    server = smtp_server()
    kernel = make_kernel(server.settings(port=1), outbox={"dispatch_in_server": False, "max_attempts": 2,
                                                          "backoff_base": 10.0, "backoff_max": 10.0})
    event = notify(kernel)
    await kernel.outbox.drain()
    clock.advance(seconds=10)
    await kernel.outbox.drain()
    delivery = only_delivery(kernel, event.id)
    assert delivery["status"] == "dead" and delivery["attempts"] == 2
    assert "ConnectionRefusedError" in delivery["last_error"]


async def test_one_message_identity_per_notification(make_kernel, smtp_server):
    """The same idempotency key publishes once; a send repeated after a success (at least
    once delivery: a lost acknowledgement) carries the same Message-ID, so it is recognisable."""
    server = smtp_server()
    kernel = make_kernel(server.settings())
    first = notify(kernel)
    assert notify(kernel).id == first.id
    assert await kernel.outbox.drain() == 1
    assert len(server.messages) == 1

    notifier = kernel.notifications.notifier("email")
    payload = first.payload
    again = Notification(id=first.id, channel="email", to=payload["to"], template=payload["template"],
                         context=payload["context"], idempotency_key=payload["idempotency_key"], attempt=2)
    await notifier.send(again)
    other = notify(kernel, key="license:lic_43", context={**LICENSE, "license_id": "lic_43"})
    await kernel.outbox.drain()
    ids = [r.message["Message-ID"] for r in server.messages]
    assert ids[0] == ids[1] != ids[2] and len(ids) == 3
    assert server.messages[2].message["X-Vendo-Notification"] == other.id


async def test_unknown_template_fails_visibly(make_kernel, smtp_server):
    server = smtp_server()
    kernel = make_kernel(server.settings())
    event = notify(kernel, template="welcome_pack")
    await kernel.outbox.drain()
    delivery = only_delivery(kernel, event.id)
    assert delivery["status"] == "pending"
    assert delivery["last_error"].startswith("InvalidInput: no email template named 'welcome_pack'")
    assert server.attempts == 0


async def test_without_a_host_nothing_is_registered_and_emails_wait(make_kernel):
    kernel = make_kernel({})
    assert kernel.plugin("email-smtp").status == "ok"
    assert kernel.notifications.notifier("email") is None
    event = notify(kernel)
    assert await kernel.outbox.drain() == 0
    delivery = only_delivery(kernel, event.id)
    assert delivery["status"] == "pending" and delivery["attempts"] == 0
    assert delivery["waiting"] == "no notifier registered for channel 'email'"


@pytest.mark.parametrize(("settings", "message"), [
    ({"host": "127.0.0.1"}, "from_address is required when host is set"),
    ({"host": "127.0.0.1", "from_address": "nobody"}, "not an email address"),
    ({"host": "127.0.0.1", "from_address": "a@b.test", "username": "u"}, "set both username and password"),
    ({"security": "tls"}, "security"),
    ({"templates_dir": "/no/such/dir"}, "does not exist"),
])
def test_bad_settings_fail_the_plugin_with_the_field(make_kernel, settings, message):
    kernel = make_kernel(settings, strict=False)
    info = kernel.plugin("email-smtp")
    assert info.status == "failed" and message in info.error and "email-smtp" in info.error
