"""Tables of the password plugin (Alembic branch ``auth-password``, revision ``auth_password_0001``).

Nothing secret is stored in a form that can be used as is: passwords are argon2id hashes,
TOTP seeds are encrypted with the kernel's ``totp`` key, and single-use tokens and recovery
codes are stored as keyed hashes (HMAC-SHA256 under a key derived from the master secret).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column
from vendo import Model

#: A 64-bit auto-increment key on PostgreSQL that stays SQLite's ROWID alias.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class PasswordCredential(Model):
    """A user's password, lockout state and second factor (one row per user)."""

    __tablename__ = "auth_password_credentials"

    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("vendo_users.id", ondelete="CASCADE"),
                                         primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    failed_attempts: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    last_failed_at: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    totp_secret: Mapped[str | None] = mapped_column(Text)
    totp_enabled: Mapped[bool] = mapped_column(default=False)
    totp_enabled_at: Mapped[datetime | None]
    totp_last_step: Mapped[int | None]
    created_at: Mapped[datetime]
    password_changed_at: Mapped[datetime]


class SingleUseToken(Model):
    """A password-reset or email-verification token, stored as a keyed hash."""

    __tablename__ = "auth_password_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("vendo_users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email_key: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class RecoveryCode(Model):
    """One single-use 2FA recovery code, stored as a keyed hash."""

    __tablename__ = "auth_password_recovery_codes"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("vendo_users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class Attempt(Model):
    """A throttled event: a failed sign-in, an invalid token, a reset request, a lock.

    ``ip`` feeds the per-network throttle; ``subject`` (a keyed hash of the email address
    typed) gives addresses without a password the same lockout as accounts, so a lockout
    never tells whether an account exists.
    """

    __tablename__ = "auth_password_attempts"
    __table_args__ = (
        Index("ix_auth_password_attempts_ip_at", "ip", "at"),
        Index("ix_auth_password_attempts_subject_at", "subject", "at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    ip: Mapped[str] = mapped_column(String(64), default="")
    subject: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(index=True)
