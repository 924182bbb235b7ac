"""Domain events as plugins receive them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Event:
    """A domain event delivered from the outbox.

    :param id: stable unique id (a UUID string); the same across delivery retries.
    :param type: dotted event name, e.g. ``"billing.subscription.updated"``.
    :param payload: JSON-compatible data.
    :param created_at: when it was published (UTC).
    :param attempt: 1 for the first delivery to this subscriber, 2 for the first retry...
    """

    id: str
    type: str
    payload: dict[str, Any]
    created_at: datetime
    attempt: int = 1
