"""billing-local: customers, checkouts, subscriptions, invoices, prices, usage, portal sessions.

Revision ID: billing_local_0001
Depends on: vendo_0002
"""

import sqlalchemy as sa
from alembic import op

import vendo.db

revision = "billing_local_0001"
down_revision = None
branch_labels = ("billing-local",)
depends_on = "vendo_0002"

T = vendo.db.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "billing_local_customers",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("created_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_local_customers")),
        sa.UniqueConstraint("subject", name=op.f("uq_billing_local_customers_subject")),
    )
    op.create_table(
        "billing_local_checkouts",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("idempotency_key", sa.String(300), nullable=True),
        sa.Column("customer_id", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("plan", sa.String(64), nullable=False),
        sa.Column("price_key", sa.String(255), nullable=True),
        sa.Column("interval", sa.String(8), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("trial_days", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("success_url", sa.Text(), nullable=False),
        sa.Column("cancel_url", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("subscription_id", sa.String(40), nullable=True),
        sa.Column("created_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_local_checkouts")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_billing_local_checkouts_idempotency_key")),
    )
    op.create_table(
        "billing_local_subscriptions",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("customer_id", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("plan", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("interval", sa.String(8), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("current_period_start", T(), nullable=False),
        sa.Column("current_period_end", T(), nullable=False),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("trial_end", T(), nullable=True),
        sa.Column("scheduled_plan", sa.String(64), nullable=True),
        sa.Column("scheduled_seats", sa.Integer(), nullable=True),
        sa.Column("created_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_local_subscriptions")),
    )
    op.create_index(op.f("ix_billing_local_subscriptions_subject"), "billing_local_subscriptions", ["subject"])
    op.create_table(
        "billing_local_invoices",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("customer_id", sa.String(40), nullable=False),
        sa.Column("subscription_id", sa.String(40), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_due", sa.BigInteger(), nullable=False),
        sa.Column("amount_paid", sa.BigInteger(), nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_local_invoices")),
    )
    op.create_index(op.f("ix_billing_local_invoices_customer_id"), "billing_local_invoices", ["customer_id"])
    op.create_table(
        "billing_local_prices",
        sa.Column("lookup_key", sa.String(255), nullable=False),
        sa.Column("price_id", sa.String(40), nullable=False),
        sa.Column("unit_amount", sa.BigInteger(), nullable=False),
        sa.Column("per_seat_amount", sa.BigInteger(), nullable=False),
        sa.Column("min_seats", sa.Integer(), nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("lookup_key", name=op.f("pk_billing_local_prices")),
    )
    op.create_table(
        "billing_local_usage",
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("subscription_id", sa.String(40), nullable=False),
        sa.Column("feature", sa.String(64), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("at", T(), nullable=False),
        sa.PrimaryKeyConstraint("idempotency_key", name=op.f("pk_billing_local_usage")),
    )
    op.create_table(
        "billing_local_portals",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("customer_id", sa.String(40), nullable=False),
        sa.Column("return_url", sa.Text(), nullable=False),
        sa.Column("expires_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_local_portals")),
    )


def downgrade() -> None:
    for table in ("billing_local_portals", "billing_local_usage", "billing_local_prices", "billing_local_invoices",
                  "billing_local_subscriptions", "billing_local_checkouts", "billing_local_customers"):
        op.drop_table(table)
