"""Tables of ``vendo-auth-oidc`` (Alembic branch ``auth-oidc``, revision ``auth_oidc_0001``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vendo import Model


class LoginState(Model):
    """A sign-in that was started and not finished yet: what the callback must match.

    ``id`` is a keyed hash of the ``state`` sent to the provider (the state itself is not kept);
    ``code_verifier`` is encrypted with the kernel's master secret. A row is claimed once
    (``used_at``) and dies at ``expires_at``; expired rows are deleted by later sign-ins.
    """

    __tablename__ = "auth_oidc_states"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    nonce: Mapped[str] = mapped_column(String(128))
    code_verifier: Mapped[str] = mapped_column(String(512))
    browser_hash: Mapped[str | None] = mapped_column(String(64))
    next_url: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]


class IdentityLink(Model):
    """An external account (provider, subject) that signs in as a Vendo user."""

    __tablename__ = "auth_oidc_links"
    __table_args__ = (UniqueConstraint("provider", "subject"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("vendo_users.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320), default="")
    email_verified: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]
    last_login_at: Mapped[datetime]
