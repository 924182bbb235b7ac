"""The optional ``password`` authenticator: HTTP Basic ``email:password`` on each request.

Off unless ``basic_auth = true``: every request then costs an argon2 verification, and
accounts with 2FA cannot use it. Meant for scripts and tools that cannot hold a session.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from vendo import Principal, Unauthorized

if TYPE_CHECKING:  # pragma: no cover
    from vendo_auth_password.service import PasswordAuth

METHOD = "password:basic"


class BasicAuthenticator:
    """Turns ``Authorization: Basic base64(email:password)`` into the user's principal."""

    def __init__(self, service: PasswordAuth) -> None:
        self._service = service

    async def authenticate(self, request: Any) -> Principal | None:
        """The user's principal (every scope, like a signed-in session), ``None`` for other
        kinds of credentials.

        :raises Unauthorized: ``invalid_credentials`` (or ``totp_required``).
        :raises TooManyAttempts: ``account_locked`` or ``too_many_attempts``.
        """
        from anyio import to_thread

        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("malformed Basic credentials", code="invalid_credentials") from None
        email, separator, password = decoded.partition(":")
        if not separator or not email:
            raise Unauthorized("malformed Basic credentials", code="invalid_credentials")
        user_id = await to_thread.run_sync(self._service.authenticate_basic, email, password, request)
        return Principal(subject=user_id, scopes=frozenset({"*"}), method=METHOD)
