"""The kernel's master secret and what is derived from it.

One master key signs session tokens, keys API-key hashes and encrypts secrets at rest
(TOTP seeds, provider keys). Set it with ``VENDO_SECRET_KEY`` (any string of 32+ characters;
required when several machines serve the same database). Without it, a random key is created
once in ``<data_dir>/secret.key`` (mode 0600) and reused: enough for one machine.

Every use derives its own subkey (HMAC-SHA256 of the master key and a purpose string), so a
key leaked from one purpose says nothing of another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets as _random
from pathlib import Path

from vendo.errors import ConfigError, InvalidInput

KEY_FILE = "secret.key"
MIN_LENGTH = 32


class Secrets:
    """Derives purpose-bound keys from the master secret; encrypts and decrypts at rest."""

    def __init__(self, master: bytes) -> None:
        if len(master) < MIN_LENGTH:
            raise ConfigError(f"secret_key must be at least {MIN_LENGTH} characters (VENDO_SECRET_KEY)")
        self._master = master

    @classmethod
    def from_settings(cls, configured: str | None, data_dir: Path) -> Secrets:
        """The configured key, or the one kept in the data directory (created on first use)."""
        if configured:
            return cls(configured.encode())
        path = data_dir / KEY_FILE
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(base64.urlsafe_b64encode(_random.token_bytes(48)).decode())
        return cls(path.read_text().strip().encode())

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose, e.g. ``"session-jwt"`` or ``"api-key-hash"``."""
        return hmac.new(self._master, purpose.encode(), hashlib.sha256).digest()

    def keyed_hash(self, purpose: str, value: str) -> str:
        """HMAC-SHA256 of ``value`` under the purpose's key, hex: for looking up high-entropy
        secrets (API keys, refresh tokens) without storing them."""
        return hmac.new(self.derive(purpose), value.encode(), hashlib.sha256).hexdigest()

    def encrypt(self, purpose: str, plaintext: str) -> str:
        """Authenticated encryption (XSalsa20-Poly1305) under the purpose's key; base64 text."""
        from nacl.secret import SecretBox

        return base64.urlsafe_b64encode(SecretBox(self.derive(purpose)).encrypt(plaintext.encode())).decode()

    def decrypt(self, purpose: str, token: str) -> str:
        """Reverse :meth:`encrypt`.

        :raises InvalidInput: the text was altered, or encrypted for another purpose or key.
        """
        from nacl.exceptions import CryptoError
        from nacl.secret import SecretBox

        try:
            return SecretBox(self.derive(purpose)).decrypt(base64.urlsafe_b64decode(token.encode())).decode()
        except (CryptoError, ValueError):
            raise InvalidInput("encrypted value cannot be decrypted with this key", code="decryption_failed") from None
