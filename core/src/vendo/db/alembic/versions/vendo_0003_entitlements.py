"""Kernel: plan catalog versions, plan assignments, usage counters, ledger and holds.

Revision ID: vendo_0003
Revises: vendo_0002
"""

import sqlalchemy as sa
from alembic import op

import vendo.db

revision = "vendo_0003"
down_revision = "vendo_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vendo_catalog_versions",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("created_at", vendo.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_vendo_catalog_versions")),
    )
    op.create_table(
        "vendo_plan_assignments",
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("plan_id", sa.String(64), nullable=False),
        sa.Column("catalog_version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trial_ends_at", vendo.db.UTCDateTime(), nullable=True),
        sa.Column("grace_until", vendo.db.UTCDateTime(), nullable=True),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("add_ons", sa.JSON(), nullable=False),
        sa.Column("updated_at", vendo.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("subject", name=op.f("pk_vendo_plan_assignments")),
    )
    op.create_table(
        "vendo_usage_counters",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", vendo.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_vendo_usage_counters")),
    )
    op.create_table(
        "vendo_usage_ledger",
        sa.Column("id", vendo.db.BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("member", sa.String(64), nullable=True),
        sa.Column("feature", sa.String(64), nullable=False),
        sa.Column("period_start", vendo.db.UTCDateTime(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("buckets", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", vendo.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vendo_usage_ledger")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_vendo_usage_ledger_idempotency_key")),
    )
    op.create_index("ix_vendo_usage_ledger_subject_feature_period", "vendo_usage_ledger",
                    ["subject", "feature", "period_start"])
    op.create_table(
        "vendo_usage_holds",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("member", sa.String(64), nullable=True),
        sa.Column("feature", sa.String(64), nullable=False),
        sa.Column("period_start", vendo.db.UTCDateTime(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("buckets", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("expires_at", vendo.db.UTCDateTime(), nullable=False),
        sa.Column("created_at", vendo.db.UTCDateTime(), nullable=False),
        sa.Column("settled_at", vendo.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vendo_usage_holds")),
    )
    op.create_index(op.f("ix_vendo_usage_holds_status"), "vendo_usage_holds", ["status"])
    op.create_index(op.f("ix_vendo_usage_holds_expires_at"), "vendo_usage_holds", ["expires_at"])


def downgrade() -> None:
    op.drop_table("vendo_usage_holds")
    op.drop_table("vendo_usage_ledger")
    op.drop_table("vendo_usage_counters")
    op.drop_table("vendo_plan_assignments")
    op.drop_table("vendo_catalog_versions")
