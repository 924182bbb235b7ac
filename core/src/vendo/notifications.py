"""Notifications: ``kernel.notify`` publishes them, the outbox hands them to notifiers.

Whoever wants an email sent publishes, in its own transaction, the outbox event
``notification.requested`` with the payload ``{"channel", "to", "template", "context",
"idempotency_key"}`` (:meth:`vendo.Kernel.notify` builds and checks it). The outbox adds
one delivery routed to ``notify:<channel>`` besides its plugin subscribers, and its
dispatcher hands that delivery to the first active notifier of the channel (the
``notifier`` family, :func:`vendo.hookspecs.vendo_register_notifiers`). So sends are
retried with backoff and end ``dead`` after ``outbox.max_attempts``, like any delivery.

Idempotency: the event is stored with the key ``notification:<idempotency_key>`` in the
outbox's unique ``dedup_key`` column; publishing the same key again (in another
transaction, or concurrently) returns the first event and publishes nothing, also when the
event is published with ``kernel.outbox.publish`` directly.

Without a notifier for its channel, a notification's delivery stays ``pending`` and is
never attempted (the dispatcher only claims routes it can serve): it is listed by
``vendo outbox list --type notification.requested``, its content shown by
``vendo outbox show EVENT_ID`` (an operator may deliver a license key by hand), and it
goes out as soon as a notifier of the channel is installed and configured.

Secrets (a license key, an invitation, password-reset or email-verification link) never sit
in clear in the outbox: a caller passes them as ``secret_context`` (``SECRET_FIELDS`` names
those of the well-known templates), which is sealed (authenticated encryption under a key
derived from the master secret, purpose ``notifications:sealed-context``) into the payload's
``sealed`` field. Only the notifier sees them, merged into :attr:`vendo.Notification.context`
at delivery; ``vendo outbox list`` and ``show``, subscribers of ``notification.requested``
and database dumps see the ciphertext. A notification sealed under a master secret that has
been replaced since cannot be opened: its delivery fails (``decryption_failed``) and is
retried, then ends ``dead``, rather than being sent without its secret.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from vendo.capabilities import NOTIFICATION_REQUESTED, Notification, Notifier
from vendo.errors import InvalidInput

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.orm import Session

    from vendo.events import Event
    from vendo.kernel import Kernel

#: Outbox delivery routes of notifications: ``notify:<channel>``.
ROUTE_PREFIX = "notify:"
_CHANNEL = re.compile(r"^[a-z][a-z0-9_-]{0,49}$")
_TEMPLATE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII without spaces: safe in a header
#: The purpose of the key that seals notifications' secret context.
SEALED_PURPOSE = "notifications:sealed-context"
#: The longest ``sealed`` field accepted (base64 text).
MAX_SEALED = 64_000
#: The secret context values of the well-known templates (a key, links carrying a single-use
#: token): their senders pass them as ``secret_context``; ``vendo outbox seal`` seals them in
#: the rows older versions stored in clear (:meth:`Notifications.seal_stored`).
SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "license_key": ("key",),
    "invitation": ("accept_url",),
    "password_reset": ("reset_url",),
    "email_verification": ("verify_url",),
}


def dedup_key(idempotency_key: str) -> str:
    """The outbox ``dedup_key`` of a notification."""
    return f"notification:{idempotency_key}"


def check_request(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate a ``notification.requested`` payload; return it normalised.

    :raises InvalidInput: ``invalid_notification`` (or ``invalid_email`` for a bad address).
    """
    data = dict(payload or {})
    channel = data.get("channel", "email")
    if not isinstance(channel, str) or not _CHANNEL.match(channel):
        raise InvalidInput(f"notification channel must be a lower-case name, got {channel!r}",
                           code="invalid_notification")
    to = data.get("to")
    if not isinstance(to, str) or not to.strip():
        raise InvalidInput("notification needs a recipient ('to')", code="invalid_notification")
    if channel == "email":
        from vendo.identity.service import normalize_email

        to, _ = normalize_email(to)
    template = data.get("template")
    if not isinstance(template, str) or not _TEMPLATE.match(template):
        raise InvalidInput(f"notification template must be a name like 'license_key', got {template!r}",
                           code="invalid_notification")
    context = data.get("context", {})
    if not isinstance(context, Mapping):
        raise InvalidInput("notification context must be an object", code="invalid_notification")
    key = data.get("idempotency_key")
    if not isinstance(key, str) or not _KEY.match(key):
        raise InvalidInput("notification idempotency_key must be 1 to 200 printable characters without spaces",
                           code="invalid_notification")
    sealed = data.get("sealed")
    if sealed is not None and (not isinstance(sealed, str) or not 0 < len(sealed) <= MAX_SEALED):
        raise InvalidInput("notification 'sealed' must be the text Notifications.seal returns",
                           code="invalid_notification")
    extra = set(data) - {"channel", "to", "template", "context", "idempotency_key", "sealed"}
    if extra:
        raise InvalidInput(f"unknown notification fields: {', '.join(sorted(extra))}", code="invalid_notification")
    normalised = {"channel": channel, "to": to.strip(), "template": template, "context": dict(context),
                  "idempotency_key": key}
    if sealed is not None:
        normalised["sealed"] = sealed
    return normalised


class Notifications:
    """The notification service (``kernel.notifications``)."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel

    def request(self, session: Session, *, to: str, template: str, context: Mapping[str, Any],
                idempotency_key: str, channel: str = "email",
                secret_context: Mapping[str, Any] | None = None) -> Event:
        """Publish ``notification.requested`` in ``session``'s transaction (once per key).

        :param context: the template's values, stored in clear (shown by ``vendo outbox show``).
        :param secret_context: more template values that are secrets (a license key, a link
            carrying a token): sealed at rest in the payload's ``sealed`` field, handed to the
            notifier merged into the context, never stored or shown in clear.
        :return: the event; for a key already used, the first event (nothing new is published).
        :raises InvalidInput: bad address, channel, template, context or key; a name in both
            ``context`` and ``secret_context``.
        """
        payload: dict[str, Any] = {"channel": channel, "to": to, "template": template, "context": context,
                                   "idempotency_key": idempotency_key}
        if secret_context:
            if not isinstance(context, Mapping) or not isinstance(secret_context, Mapping):
                raise InvalidInput("notification context and secret_context must be objects",
                                   code="invalid_notification")
            both = sorted(set(context) & set(secret_context))
            if both:
                raise InvalidInput(f"notification values both in clear and secret: {', '.join(both)}",
                                   code="invalid_notification")
            payload["sealed"] = self.seal(secret_context)
        return self._kernel.outbox.publish(session, NOTIFICATION_REQUESTED, payload)

    def seal(self, values: Mapping[str, Any]) -> str:
        """Encrypt template values for a notification's ``sealed`` field.

        :raises InvalidInput: values that are not JSON-serialisable.
        """
        try:
            text = json.dumps({str(k): v for k, v in values.items()}, allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"notification secret_context is not JSON-serialisable: {exc}",
                               code="invalid_notification") from None
        return self._kernel.secrets.encrypt(SEALED_PURPOSE, text)

    def unseal(self, sealed: str | None) -> dict[str, Any]:
        """The values :meth:`seal` encrypted (``{}`` for ``None``).

        :raises InvalidInput: ``decryption_failed`` (altered, or sealed under another master secret).
        """
        if not sealed:
            return {}
        values = json.loads(self._kernel.secrets.decrypt(SEALED_PURPOSE, sealed))
        return values if isinstance(values, dict) else {}

    def context_of(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """A ``notification.requested`` payload's whole template context, its sealed values
        opened: what the notifier renders. Never log it.

        :raises InvalidInput: ``decryption_failed``.
        """
        return {**dict(payload.get("context") or {}), **self.unseal(payload.get("sealed"))}

    def seal_stored(self, *, template: str, fields: Iterable[str]) -> int:
        """Seal, in the stored ``notification.requested`` events of ``template``, the context
        values named ``fields`` that are still in clear (written before their sender passed
        them as ``secret_context``): each moves into ``sealed`` (merged with what is sealed
        already) and leaves ``context``. Idempotent; run once after such an upgrade (``vendo
        outbox seal`` does it for every template of ``SECRET_FIELDS``). Pending deliveries keep working: the notifier gets the
        same values.

        :return: how many events were rewritten.
        """
        from sqlalchemy import select

        from vendo.outbox import OutboxEvent

        names = set(fields)
        changed = 0
        with self._kernel.session() as session:
            rows = session.scalars(select(OutboxEvent).where(OutboxEvent.type == NOTIFICATION_REQUESTED)
                                   .order_by(OutboxEvent.id))
            for row in rows:
                payload = dict(row.payload or {})
                context = dict(payload.get("context") or {})
                clear = {name: context.pop(name) for name in sorted(names & set(context))}
                if payload.get("template") != template or not clear:
                    continue
                payload["sealed"] = self.seal({**self.unseal(payload.get("sealed")), **clear})
                payload["context"] = context
                row.payload = payload
                changed += 1
        return changed

    def link(self, template: str, **values: str) -> str:
        """A link for an email: ``template`` (e.g. ``{public_url}/reset-password?token={token}``)
        with ``public_url`` (the setting, or the server's address) and ``values`` URL-quoted."""
        from urllib.parse import quote

        quoted = {name: quote(str(value), safe="") for name, value in values.items()}
        return template.format(public_url=self._kernel.settings.base_url, **quoted)

    def notifier(self, channel: str) -> Notifier | None:
        """The notifier serving ``channel``: the first active one naming it, or ``None``."""
        for notifier in self._kernel.providers.active("notifier"):
            if getattr(notifier, "channel", None) == channel:
                return notifier
        return None

    def routes(self) -> list[str]:
        """The delivery routes some notifier can serve now (``notify:email``...)."""
        channels = {getattr(n, "channel", None) for n in self._kernel.providers.active("notifier")}
        return sorted(ROUTE_PREFIX + c for c in channels if isinstance(c, str))

    async def deliver(self, route: str, event: Event) -> None:
        """Hand one ``notification.requested`` event to the notifier of its channel.

        :raises LookupError: no notifier serves the route's channel any more.
        :raises Exception: whatever the notifier raised (the outbox retries the delivery).
        """
        channel = route[len(ROUTE_PREFIX):]
        notifier = self.notifier(channel)
        if notifier is None:
            raise LookupError(f"no notifier registered for channel '{channel}'")
        payload = event.payload
        await notifier.send(Notification(
            id=event.id, channel=channel, to=payload["to"], template=payload["template"],
            context=self.context_of(payload), idempotency_key=payload["idempotency_key"],
            attempt=event.attempt,
        ))
