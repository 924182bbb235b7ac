"""Kernel: the usage reported to billing providers for usage-based prices, and since when a
subscription bills its current plan.

Revision ID: vendo_0009
Revises: vendo_0008
"""

import sqlalchemy as sa
from alembic import op

from vendo.db import UTCDateTime

revision = "vendo_0009"
down_revision = "vendo_0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vendo_billing_usage_reports",
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("subscription_id", sa.String(255), nullable=False),
        sa.Column("feature", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("counted_since", UTCDateTime(), nullable=False),
        sa.Column("billed_units", sa.BigInteger(), nullable=False),
        sa.Column("pending_key", sa.String(100), nullable=True),
        sa.Column("pending_units", sa.BigInteger(), nullable=True),
        sa.Column("pending_price_key", sa.String(255), nullable=True),
        sa.Column("pending_at", UTCDateTime(), nullable=True),
        sa.Column("reported_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("provider", "subscription_id", "feature", name=op.f("pk_vendo_billing_usage_reports")),
    )
    op.create_index(op.f("ix_vendo_billing_usage_reports_subject"), "vendo_billing_usage_reports", ["subject"])
    with op.batch_alter_table("vendo_billing_subscriptions") as batch:
        batch.add_column(sa.Column("billed_since", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vendo_billing_subscriptions") as batch:
        batch.drop_column("billed_since")
    op.drop_index("ix_vendo_billing_usage_reports_subject", table_name="vendo_billing_usage_reports")
    op.drop_table("vendo_billing_usage_reports")
