"""GDPR: what the plugin holds about a user (never the secrets themselves), and erasure."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from vendo_auth_password.models import Attempt, PasswordCredential, RecoveryCode, SingleUseToken
from vendo_auth_password.throttle import SUBJECT_PURPOSE

if TYPE_CHECKING:  # pragma: no cover
    from vendo import Kernel


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def export_user(session: Session, user_id: str) -> dict[str, Any] | None:
    """The user's password, 2FA and pending-token facts; ``None`` when there are none.

    Says that a password and a TOTP seed exist, never their hash, seed or codes.
    """
    credential = session.get(PasswordCredential, user_id)
    tokens = session.scalars(select(SingleUseToken).where(SingleUseToken.user_id == user_id)
                             .order_by(SingleUseToken.created_at)).all()
    if credential is None and not tokens:
        return None
    data: dict[str, Any] = {"password": None, "two_factor": None}
    if credential is not None:
        data["password"] = {
            "set": True, "created_at": _iso(credential.created_at),
            "changed_at": _iso(credential.password_changed_at), "last_login_at": _iso(credential.last_login_at),
            "failed_attempts": credential.failed_attempts, "locked_until": _iso(credential.locked_until),
        }
        codes_left = session.scalar(select(func.count()).select_from(RecoveryCode)
                                    .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))) or 0
        data["two_factor"] = {
            "totp_enabled": credential.totp_enabled, "enabled_at": _iso(credential.totp_enabled_at),
            "totp_secret_stored": credential.totp_secret is not None, "recovery_codes_left": codes_left,
        }
    data["email_tokens"] = [{"purpose": t.purpose, "created_at": _iso(t.created_at),
                             "expires_at": _iso(t.expires_at), "used_at": _iso(t.used_at)} for t in tokens]
    return data


def revoke_credentials(session: Session, user_id: str) -> None:
    """Delete the user's password (with its TOTP seed), recovery codes and pending email tokens,
    in the caller's transaction."""
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    session.execute(delete(SingleUseToken).where(SingleUseToken.user_id == user_id))
    session.execute(delete(PasswordCredential).where(PasswordCredential.user_id == user_id))


def erase_user(session: Session, kernel: Kernel, user_id: str) -> None:
    """Delete the user's credential, tokens, recovery codes and sign-in attempts, in the
    erasure's transaction (before the kernel deletes the user)."""
    user = kernel.identity.user(session, user_id)
    revoke_credentials(session, user_id)
    subject = kernel.secrets.keyed_hash(SUBJECT_PURPOSE, user.email_key)
    session.execute(delete(Attempt).where(Attempt.subject == subject))
