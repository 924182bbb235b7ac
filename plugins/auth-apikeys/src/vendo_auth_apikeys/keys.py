"""The API key format: ``vk_<environment>_<id><secret>``.

- ``vk_``: marks a Vendo API key, so authenticators and secret scanners recognise it.
- ``<environment>``: ``live`` or ``test``, followed by ``_``.
- ``<id>``: 12 characters of ``[0-9a-z]``, the key's public id and its primary key: the
  lookup is one primary-key read, whatever the number of keys.
- ``<secret>``: 32 characters of ``[0-9A-Za-z]`` (about 190 bits of randomness), stored
  only as ``kernel.secrets.keyed_hash("api-key", secret)`` and compared in constant time.

A whole key is 52 characters of letters, digits and underscores (double-click selects it).
Nothing here touches the database: these are pure functions.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass

#: Every key starts with this.
KEY_PREFIX = "vk_"
#: The environments a key can belong to.
ENVIRONMENTS = ("live", "test")
#: Length of the public id part (the primary key).
ID_LENGTH = 12
#: Length of the secret part.
SECRET_LENGTH = 32
#: Purpose string of the keyed hash of secrets (a subkey of the master secret of its own).
HASH_PURPOSE = "api-key"

ID_ALPHABET = string.digits + string.ascii_lowercase
SECRET_ALPHABET = string.digits + string.ascii_letters
#: Length of every well-formed key, e.g. ``vk_live_`` (8) + id (12) + secret (32).
KEY_LENGTH = len(KEY_PREFIX) + len("live_") + ID_LENGTH + SECRET_LENGTH

_KEY = re.compile(rf"vk_(live|test)_([0-9a-z]{{{ID_LENGTH}}})([0-9A-Za-z]{{{SECRET_LENGTH}}})")
_KEY_ID = re.compile(rf"[0-9a-z]{{{ID_LENGTH}}}")


@dataclass(frozen=True)
class ParsedKey:
    """The three parts of a well-formed key."""

    environment: str
    key_id: str
    secret: str


def new_key_id() -> str:
    """A random public id (12 characters of ``[0-9a-z]``, about 62 bits)."""
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


def new_secret() -> str:
    """A random secret (32 characters of ``[0-9A-Za-z]``, about 190 bits)."""
    return "".join(secrets.choice(SECRET_ALPHABET) for _ in range(SECRET_LENGTH))


def format_key(environment: str, key_id: str, secret: str) -> str:
    """The full key shown once to its creator.

    :raises ValueError: a part that does not fit the format (a programming error).
    """
    key = f"{KEY_PREFIX}{environment}_{key_id}{secret}"
    if parse_key(key) is None:
        raise ValueError("key parts do not fit the vk_<environment>_<id><secret> format")
    return key


def parse_key(value: str) -> ParsedKey | None:
    """The parts of a well-formed key, or ``None`` for anything else (never raises)."""
    if not isinstance(value, str) or len(value) != KEY_LENGTH:
        return None
    match = _KEY.fullmatch(value)
    if match is None:
        return None
    return ParsedKey(match.group(1), match.group(2), match.group(3))


def is_key_id(value: str) -> bool:
    """Whether ``value`` has the shape of a key id (path parameters are checked before any query)."""
    return isinstance(value, str) and _KEY_ID.fullmatch(value) is not None


def looks_like_api_key(value: str | None) -> bool:
    """Whether a credential claims to be a Vendo API key (well-formed or not)."""
    return isinstance(value, str) and value.startswith(KEY_PREFIX)


def display_prefix(environment: str, key_id: str) -> str:
    """What lists show of a key: its public part, e.g. ``vk_live_ab12cd34ef56…``."""
    return f"{KEY_PREFIX}{environment}_{key_id}\u2026"
