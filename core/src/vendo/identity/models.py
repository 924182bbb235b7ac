"""Tables of the identity domain (migration ``vendo_0002``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from vendo.db import BigIntPK, Model


class User(Model):
    """A person. ``email`` is kept as given; ``email_key`` (lower-cased) is unique."""

    __tablename__ = "vendo_users"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    email_verified_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class Workspace(Model):
    """A tenant: members, plans and usage belong to a workspace."""

    __tablename__ = "vendo_workspaces"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    personal: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]


class Membership(Model):
    """A user's role in a workspace; exactly one OWNER per workspace."""

    __tablename__ = "vendo_memberships"
    __table_args__ = (
        UniqueConstraint("workspace_id", "user_id"),
        Index(
            "uq_vendo_memberships_one_owner", "workspace_id", unique=True,
            sqlite_where=text("role = 'OWNER'"), postgresql_where=text("role = 'OWNER'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(String(40), ForeignKey("vendo_workspaces.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("vendo_users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]


class Invitation(Model):
    """An invitation to join a workspace, by single-use token (stored hashed)."""

    __tablename__ = "vendo_invitations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(40), ForeignKey("vendo_workspaces.id", ondelete="CASCADE"),
                                              index=True)
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class RefreshToken(Model):
    """One refresh token of a session family; rotation marks it used and issues the next."""

    __tablename__ = "vendo_refresh_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    family_id: Mapped[str] = mapped_column(String(40), index=True)
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("vendo_users.id", ondelete="CASCADE"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class AuditEntry(Model):
    """An append-only record of who did what, when, where."""

    __tablename__ = "vendo_audit_log"
    __table_args__ = (Index("ix_vendo_audit_log_workspace_at", "workspace_id", "at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    action: Mapped[str] = mapped_column(String(100), index=True)
    outcome: Mapped[str] = mapped_column(String(16), default="success")
    workspace_id: Mapped[str | None] = mapped_column(String(40))
    actor_id: Mapped[str | None] = mapped_column(String(40), index=True)
    actor_label: Mapped[str] = mapped_column(String(320), default="")
    target_type: Mapped[str] = mapped_column(String(40), default="")
    target_id: Mapped[str] = mapped_column(String(120), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    request_id: Mapped[str] = mapped_column(String(128), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
