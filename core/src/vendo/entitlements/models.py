"""Tables of plans, assignments, counters, the usage ledger and holds (migrations ``vendo_0003``
and ``vendo_0004``: the ``applied`` journal flags)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Index, String, UniqueConstraint, text, true
from sqlalchemy.orm import Mapped, mapped_column

from vendo.db import BigIntPK, Model


class CatalogVersion(Model):
    """One loaded version of the plan catalog; the newest is current. Subjects keep the
    version they subscribed to (editing a plan never silently changes their terms)."""

    __tablename__ = "vendo_catalog_versions"

    version: Mapped[int] = mapped_column(primary_key=True)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    digest: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime]


class Assignment(Model):
    """The plan a subject (user or workspace) is on, with the catalog version of its terms."""

    __tablename__ = "vendo_plan_assignments"

    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    plan_id: Mapped[str] = mapped_column(String(64))
    catalog_version: Mapped[int]
    status: Mapped[str] = mapped_column(String(16))  # trialing, active, past_due, canceled, expired
    trial_ends_at: Mapped[datetime | None]
    grace_until: Mapped[datetime | None]
    seats: Mapped[int] = mapped_column(default=1)
    add_ons: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime]


class Counter(Model):
    """A usage counter of the SQL counter store: one per subject, feature and period."""

    __tablename__ = "vendo_usage_counters"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime]


#: The condition of rows whose counter move waits in the journal, as each database's planner
#: matches the queries' ``applied = false`` against a partial index.
PENDING = {"postgresql_where": text("NOT applied"), "sqlite_where": text("applied = 0")}


class LedgerEntry(Model):
    """One accepted usage record (consume, track, refund, commit), exactly once by idempotency key.

    ``applied`` is false while the entry's ``amount`` has not reached the counter store (it
    was unreachable: the entry waits in the journal for ``apply_journal``)."""

    __tablename__ = "vendo_usage_ledger"
    __table_args__ = (
        UniqueConstraint("idempotency_key"),
        Index("ix_vendo_usage_ledger_subject_feature_period", "subject", "feature", "period_start"),
        Index("ix_vendo_usage_ledger_pending", "id", **PENDING),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(64))
    member: Mapped[str | None] = mapped_column(String(64))
    feature: Mapped[str] = mapped_column(String(64))
    period_start: Mapped[datetime]
    amount: Mapped[int] = mapped_column(BigInteger)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    buckets: Mapped[list[Any]] = mapped_column(JSON, default=list)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime]
    applied: Mapped[bool] = mapped_column(default=True, server_default=true())


class Hold(Model):
    """Units reserved for work of unknown cost, counted at once, settled by commit or release.

    ``applied`` says the counter store agrees with the hold's status: it counts the
    ``amount`` while the hold is ``held`` and no longer once it is settled. It is false while
    that move waits in the journal (the store was unreachable)."""

    __tablename__ = "vendo_usage_holds"
    __table_args__ = (
        Index("ix_vendo_usage_holds_pending", "id", **PENDING),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subject: Mapped[str] = mapped_column(String(64))
    member: Mapped[str | None] = mapped_column(String(64))
    feature: Mapped[str] = mapped_column(String(64))
    period_start: Mapped[datetime]
    amount: Mapped[int] = mapped_column(BigInteger)
    buckets: Mapped[list[Any]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), index=True)  # held, committed, released
    expires_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime]
    settled_at: Mapped[datetime | None]
    applied: Mapped[bool] = mapped_column(default=True, server_default=true())
