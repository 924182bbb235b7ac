"""Throttling: per-IP budgets and the lockout of email addresses that have no password.

Accounts with a password keep their lockout state on their credential row; this module
gives every other address typed at sign-in (unknown ones included) the same behaviour,
from the ``auth_password_attempts`` table, so a lockout never reveals whether an account
exists. Rows older than the longest window (and at least a day) are pruned as new ones
are written.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Iterable

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from vendo_auth_password.models import Attempt

if TYPE_CHECKING:  # pragma: no cover
    from vendo import Kernel

    from vendo_auth_password.settings import PasswordSettings

#: Attempt kinds.
LOGIN_FAILURE = "login"
INVALID_TOKEN = "token"
RESET_REQUEST = "forgot"
REGISTRATION = "register"
LOCK = "lock"
#: Kinds counted by the per-IP failure budget.
FAILURES = (LOGIN_FAILURE, INVALID_TOKEN)
SUBJECT_PURPOSE = "auth-password-login-subject"


class Throttle:
    """Reads and writes the attempts table; every method works in the caller's session."""

    def __init__(self, kernel: Kernel, settings: PasswordSettings) -> None:
        self._kernel = kernel
        self._settings = settings
        self._retention = timedelta(seconds=max(settings.ip_window, settings.lockout_duration, 86_400))

    def subject(self, email_key: str) -> str:
        """The keyed hash standing for an email address in the attempts table."""
        return self._kernel.secrets.keyed_hash(SUBJECT_PURPOSE, email_key)

    def ip_retry_after(self, session: Session, ip: str, kinds: Iterable[str], limit: int,
                       now: datetime) -> float | None:
        """Seconds until ``ip`` may try again, when it used up ``limit`` attempts of ``kinds``
        within the window; ``None`` when it may go on (or has no address)."""
        if not ip:
            return None
        since = now - timedelta(seconds=self._settings.ip_window)
        # The limit-th most recent attempt: once it leaves the window, one more is allowed.
        oldest = session.scalar(
            select(Attempt.at).where(Attempt.ip == ip, Attempt.kind.in_(list(kinds)), Attempt.at > since)
            .order_by(Attempt.at.desc()).limit(1).offset(limit - 1)
        )
        if oldest is None:
            return None
        return (oldest + timedelta(seconds=self._settings.ip_window) - now).total_seconds()

    def record(self, session: Session, kind: str, ip: str, now: datetime, subject: str | None = None) -> None:
        """Write one attempt and prune the expired ones."""
        session.execute(delete(Attempt).where(Attempt.at < now - self._retention))
        session.add(Attempt(kind=kind, ip=(ip or "")[:64], subject=subject, at=now))

    def subject_locked_until(self, session: Session, subject: str, now: datetime) -> datetime | None:
        """When the lock of an address without a password ends, if it is locked now."""
        last_lock = self._last_lock(session, subject)
        if last_lock is None:
            return None
        until = last_lock + timedelta(seconds=self._settings.lockout_duration)
        return until if until > now else None

    def subject_failed(self, session: Session, subject: str, ip: str, now: datetime) -> datetime | None:
        """Record a failed sign-in of an address without a password; lock it at the
        threshold (consecutive failures since its last lock). Return the lock's end if it
        was locked now."""
        self.record(session, LOGIN_FAILURE, ip, now, subject)
        session.flush()
        since = max(self._last_lock(session, subject) or now - self._retention, now - self._retention)
        failures = session.scalar(
            select(func.count()).select_from(Attempt)
            .where(Attempt.subject == subject, Attempt.kind == LOGIN_FAILURE, Attempt.at > since)
        ) or 0
        if failures < self._settings.lockout_threshold:
            return None
        session.add(Attempt(kind=LOCK, ip="", subject=subject, at=now))
        return now + timedelta(seconds=self._settings.lockout_duration)

    def forget_subject(self, session: Session, subject: str) -> None:
        """Delete every attempt of an address (GDPR erasure)."""
        session.execute(delete(Attempt).where(Attempt.subject == subject))

    def _last_lock(self, session: Session, subject: str) -> datetime | None:
        return session.scalar(select(func.max(Attempt.at)).where(Attempt.subject == subject, Attempt.kind == LOCK))
