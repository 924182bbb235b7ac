"""The plugin's table (migration ``auth_apikeys_0001``): one row per key, secret hashed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from vendo import Model

TABLE = "auth_apikeys_keys"


class ApiKey(Model):
    """A workspace API key.

    ``id`` is the public id embedded in the key (its primary key); ``secret_hash`` the keyed
    hash of the secret part. A rotated key points at its successor (``replaced_by``) and keeps
    working until ``grace_until``; a revoked key stops at once (``revoked_at``).
    """

    __tablename__ = TABLE
    __table_args__ = (Index("ix_auth_apikeys_keys_workspace_created", "workspace_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(40), ForeignKey("vendo_workspaces.id", ondelete="CASCADE"))
    created_by: Mapped[str] = mapped_column(String(40), ForeignKey("vendo_users.id", ondelete="CASCADE"),
                                            index=True)
    name: Mapped[str] = mapped_column(String(100))
    environment: Mapped[str] = mapped_column(String(8))
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    rate_limit_tier: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    rotated_at: Mapped[datetime | None]
    grace_until: Mapped[datetime | None]
    replaced_by: Mapped[str | None] = mapped_column(String(16))
    rotated_from: Mapped[str | None] = mapped_column(String(16))

    def as_dict(self, now: datetime, creator_is_member: bool | None = None) -> dict[str, Any]:
        """The key as JSON-compatible data: never the secret nor its hash."""
        from vendo_auth_apikeys.keys import display_prefix

        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "prefix": display_prefix(self.environment, self.id),
            "environment": self.environment,
            "scopes": list(self.scopes or []),
            "rate_limit_tier": self.rate_limit_tier,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "expires_at": _iso(self.expires_at),
            "last_used_at": _iso(self.last_used_at),
            "revoked_at": _iso(self.revoked_at),
            "rotated": self.rotated_at is not None,
            "rotated_at": _iso(self.rotated_at),
            "grace_until": _iso(self.grace_until),
            "replaced_by": self.replaced_by,
            "rotated_from": self.rotated_from,
            "status": self.status(now),
        }
        if creator_is_member is not None:
            data["creator_is_member"] = creator_is_member
        return data

    def status(self, now: datetime) -> str:
        """``revoked``, ``expired``, ``rotated`` (grace over), ``rotating`` (in its grace
        window: still works) or ``active``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        if self.grace_until is not None:
            return "rotated" if self.grace_until <= now else "rotating"
        return "active"

    def usable(self, now: datetime) -> bool:
        """Whether the key authenticates at ``now``."""
        return self.status(now) in ("active", "rotating")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
