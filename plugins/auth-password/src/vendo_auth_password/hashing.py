"""argon2id password hashing, with a dummy hash so unknown accounts cost the same to refuse."""

from __future__ import annotations

import logging
import secrets
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from vendo_auth_password.settings import PasswordSettings

log = logging.getLogger("vendo.auth_password")


class Passwords:
    """Hashes and verifies passwords with argon2-cffi's ``PasswordHasher`` (argon2id).

    Parameters are argon2-cffi's defaults unless the settings override them; a stored hash
    made with other parameters reports :meth:`needs_rehash` so sign-in can upgrade it.
    """

    def __init__(self, settings: PasswordSettings) -> None:
        from argon2 import PasswordHasher

        overrides = {
            "time_cost": settings.argon2_time_cost,
            "memory_cost": settings.argon2_memory_cost,
            "parallelism": settings.argon2_parallelism,
        }
        self._hasher = PasswordHasher(**{k: v for k, v in overrides.items() if v is not None})
        self._dummy: str | None = None
        self._lock = threading.Lock()

    def hash(self, password: str) -> str:
        """A new argon2id hash of ``password`` (random salt)."""
        return self._hasher.hash(password)

    @property
    def dummy_hash(self) -> str:
        """A hash of a random password made with the current parameters (computed once)."""
        if self._dummy is None:
            with self._lock:
                if self._dummy is None:
                    self._dummy = self._hasher.hash(secrets.token_urlsafe(24))
        return self._dummy

    def warm(self) -> None:
        """Make :attr:`dummy_hash` now (it takes as long as one hash)."""
        _ = self.dummy_hash

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored``.

        With ``stored=None`` (no such account, or no password) the password is verified
        against :attr:`dummy_hash` and ``False`` returned, so both answers take as long.
        """
        from argon2.exceptions import InvalidHashError, VerificationError

        target = stored if stored is not None else self.dummy_hash
        try:
            self._hasher.verify(target, password)
        except VerificationError:
            return False
        except InvalidHashError:
            log.error("a stored password hash is not a valid argon2 hash; the sign-in was refused")
            return False
        return stored is not None

    def needs_rehash(self, stored: str) -> bool:
        """Whether ``stored`` was made with other parameters than the current ones."""
        from argon2.exceptions import InvalidHashError

        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True
