"""Tables of the AI domain (migration ``vendo_0008``): the BYOK vault and API-key budgets."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vendo.db import Model


class AICredential(Model):
    """A workspace's own key for one AI vendor, encrypted at rest (XSalsa20-Poly1305 under a
    key derived from the master secret for this purpose). Only a fingerprint is ever shown."""

    __tablename__ = "vendo_ai_credentials"
    __table_args__ = (UniqueConstraint("workspace", "provider"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace: Mapped[str] = mapped_column(String(64), index=True)
    provider: Mapped[str] = mapped_column(String(64))
    ciphertext: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(80))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    rotated_at: Mapped[datetime | None]


class AIKeyBudget(Model):
    """A monthly spending cap (US dollars) on the AI calls of one API key."""

    __tablename__ = "vendo_ai_key_budgets"

    workspace: Mapped[str] = mapped_column(String(64), primary_key=True)
    api_key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    monthly_usd: Mapped[float] = mapped_column(Float)
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]
