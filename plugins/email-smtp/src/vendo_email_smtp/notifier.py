"""The ``smtp`` notifier: renders a notification's template and sends it over SMTP."""

from __future__ import annotations

import logging

from vendo import EmailMessage, Notification

from vendo_email_smtp import sender
from vendo_email_smtp.settings import SMTPSettings
from vendo_email_smtp.templates import Templates

log = logging.getLogger("vendo.email_smtp")


class SMTPNotifier:
    """Channel ``email``: one message per notification, identified by its idempotency key.

    A failure (server down, refused, TLS or AUTH error) raises, so the outbox retries the
    delivery with backoff and marks it ``dead`` after ``outbox.max_attempts``.
    """

    channel = "email"

    def __init__(self, settings: SMTPSettings) -> None:
        self.settings = settings
        self.templates = Templates(settings.templates_dir)

    def render(self, notification: Notification) -> EmailMessage:
        """The email a notification becomes (template filled, identity headers set).

        :raises InvalidInput: unknown template, or a placeholder missing from the context.
        """
        rendered = self.templates.render(notification.template, notification.context)
        return EmailMessage(
            to=notification.to,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            headers={
                "Message-ID": sender.message_id(notification.idempotency_key, self.settings.domain),
                "X-Vendo-Notification": notification.id,
            },
        )

    async def send(self, notification: Notification) -> None:
        """Render and send; raise on failure (the outbox retries)."""
        message = self.render(notification)
        await sender.send(message, self.settings)
        # Which message went out, never to whom with what: no address, body or secret in logs.
        log.info("email sent: notification %s, template %s, attempt %d, %s", notification.id,
                 notification.template, notification.attempt, message.headers["Message-ID"])
