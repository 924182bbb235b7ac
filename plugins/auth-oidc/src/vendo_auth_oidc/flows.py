"""Started sign-ins, kept server-side until their callback: ``state``, ``nonce``, the PKCE
``code_verifier``, where to go next, and (optionally) which browser started it.

- ``state`` is 256 random bits; the table keeps only its keyed hash, so the row alone cannot
  complete a sign-in.
- The ``code_verifier`` (RFC 7636, 64 characters) is encrypted with a key derived from the
  kernel's master secret.
- A state is claimed by one atomic ``UPDATE ... WHERE used_at IS NULL AND expires_at > now``
  committed before the provider is called, so a replay fails even while the first callback
  is still running, and a failed callback cannot be retried with the same state.
- With ``bind_to_browser``, the login sets a cookie (HttpOnly, SameSite=Lax, scoped to the
  callback path) whose keyed hash the row keeps; a callback from a browser without it is
  refused (login CSRF: someone else's authorization response pasted into your browser).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update

from vendo_auth_oidc import errors
from vendo_auth_oidc.models import LoginState

if TYPE_CHECKING:  # pragma: no cover
    from vendo import Kernel

STATE_PURPOSE = "auth-oidc-state"
VERIFIER_PURPOSE = "auth-oidc-code-verifier"
BROWSER_PURPOSE = "auth-oidc-browser"
COOKIE_PREFIX = "vendo_oidc_"


@dataclass(frozen=True)
class NewFlow:
    """The secrets of a sign-in being started (only ``state`` and ``nonce`` leave the server,
    in the authorization URL; ``browser_secret`` goes into the cookie)."""

    state: str
    nonce: str
    code_verifier: str
    browser_secret: str | None


@dataclass(frozen=True)
class PendingFlow:
    """A claimed sign-in: what the callback needs to finish it."""

    provider: str
    nonce: str
    code_verifier: str
    browser_hash: str | None
    next_url: str | None


def cookie_name(state: str) -> str:
    """The cookie binding one sign-in to its browser (several sign-ins may run side by side)."""
    return COOKIE_PREFIX + hashlib.sha256(state.encode()).hexdigest()[:16]


class Flows:
    """Creates and claims started sign-ins."""

    def __init__(self, kernel: Kernel, ttl: int) -> None:
        self._kernel = kernel
        self._ttl = ttl

    @staticmethod
    def new(bind_to_browser: bool) -> NewFlow:
        """Fresh random values for a sign-in."""
        return NewFlow(state=secrets.token_urlsafe(32), nonce=secrets.token_urlsafe(24),
                       code_verifier=secrets.token_urlsafe(48),
                       browser_secret=secrets.token_urlsafe(32) if bind_to_browser else None)

    def save(self, provider: str, flow: NewFlow, next_url: str | None) -> None:
        """Store a started sign-in (and delete expired ones)."""
        kernel = self._kernel
        now = kernel.now()
        with kernel.session() as session:
            session.execute(delete(LoginState).where(LoginState.expires_at <= now))
            session.add(LoginState(
                id=kernel.secrets.keyed_hash(STATE_PURPOSE, flow.state), provider=provider, nonce=flow.nonce,
                code_verifier=kernel.secrets.encrypt(VERIFIER_PURPOSE, flow.code_verifier),
                browser_hash=(kernel.secrets.keyed_hash(BROWSER_PURPOSE, flow.browser_secret)
                              if flow.browser_secret else None),
                next_url=next_url, created_at=now, expires_at=now + timedelta(seconds=self._ttl),
            ))

    def claim(self, provider: str, state: str) -> PendingFlow:
        """Use up the sign-in ``state`` names, once.

        :raises InvalidInput: ``invalid_state`` when it is unknown, expired, already used or
            was started for another provider.
        """
        if not state or len(state) > 512:
            raise errors.invalid_state("missing or malformed")
        kernel = self._kernel
        key = kernel.secrets.keyed_hash(STATE_PURPOSE, state)
        now = kernel.now()
        with kernel.session() as session:
            claimed = session.execute(
                update(LoginState)
                .where(LoginState.id == key, LoginState.provider == provider, LoginState.used_at.is_(None),
                       LoginState.expires_at > now)
                .values(used_at=now)
            ).rowcount
            if claimed != 1:
                raise errors.invalid_state()
            row = session.scalars(select(LoginState).where(LoginState.id == key)).one()
            pending = PendingFlow(provider=row.provider, nonce=row.nonce,
                                  code_verifier=kernel.secrets.decrypt(VERIFIER_PURPOSE, row.code_verifier),
                                  browser_hash=row.browser_hash, next_url=row.next_url)
        return pending

    def same_browser(self, pending: PendingFlow, cookie: str | None) -> bool:
        """Whether the callback comes from the browser that started the sign-in."""
        if pending.browser_hash is None:
            return True
        if not cookie:
            return False
        return hmac.compare_digest(pending.browser_hash, self._kernel.secrets.keyed_hash(BROWSER_PURPOSE, cookie))
