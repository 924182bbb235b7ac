"""vendo-email-smtp: transactional email for Vendo over SMTP.

Registers the ``smtp`` notifier (family ``notifier``, channel ``email``): every
``notification.requested`` event of the outbox (``kernel.notify``) is rendered from its
template (``license_key``, ``invitation``, ``password_reset``, ``payment_failed``,
``email_verification``) and sent; a failed send is retried by the outbox with backoff.
Without a ``host`` setting nothing is registered and emails wait in the outbox, visible with
``vendo outbox list``. See the README.

Importing this module is cheap: the hooks import the rest when the kernel calls them.
"""

from __future__ import annotations

import logging
from typing import Any

from vendo import hookimpl

vendo_api = ">=1.0,<2"

#: The name of the plugin (its entry point) and of its settings table.
PLUGIN_NAME = "email-smtp"
#: The name the notifier is registered under (family ``notifier``).
NOTIFIER_NAME = "smtp"

log = logging.getLogger("vendo.email_smtp")


@hookimpl
def vendo_settings_model() -> Any:
    """The ``[email-smtp]`` settings (see :class:`vendo_email_smtp.settings.SMTPSettings`)."""
    from vendo_email_smtp.settings import SMTPSettings

    return SMTPSettings


@hookimpl
def vendo_startup(settings: Any) -> None:
    """Say at start-up when no server is configured (emails then wait in the outbox)."""
    if not settings.configured:
        log.warning("email-smtp: no host set, emails wait in the outbox (vendo outbox list --type "
                    "notification.requested); set [email-smtp] host and from_address to send them")


@hookimpl
def vendo_register_commands(register: Any) -> None:
    """Add ``vendo email templates | preview | test``."""
    from vendo_email_smtp.commands import app

    register(app)


@hookimpl
def vendo_register_notifiers(register: Any, settings: Any) -> None:
    """Register the ``smtp`` notifier for channel ``email``, when a server is configured."""
    if not settings.configured:
        return
    from vendo_email_smtp.notifier import SMTPNotifier

    register(NOTIFIER_NAME, SMTPNotifier(settings))
