"""Kernel: billing customers, subscriptions, webhook events, invoices, prices, checkouts.

Revision ID: vendo_0005
Revises: vendo_0004
"""

import sqlalchemy as sa
from alembic import op

import vendo.db

revision = "vendo_0005"
down_revision = "vendo_0004"
branch_labels = None
depends_on = None

T = vendo.db.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "vendo_billing_customers",
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("customer_id", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("created_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("provider", "customer_id", name=op.f("pk_vendo_billing_customers")),
        sa.UniqueConstraint("provider", "subject", name=op.f("uq_vendo_billing_customers_provider_subject")),
    )
    op.create_table(
        "vendo_billing_subscriptions",
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("subscription_id", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(255), nullable=True),
        sa.Column("plan", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("interval", sa.String(8), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("current_period_end", T(), nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("trial_end", T(), nullable=True),
        sa.Column("grace_until", T(), nullable=True),
        sa.Column("scheduled_plan", sa.String(64), nullable=True),
        sa.Column("last_event_at", T(), nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.Column("updated_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("provider", "subscription_id", name=op.f("pk_vendo_billing_subscriptions")),
    )
    op.create_index(op.f("ix_vendo_billing_subscriptions_subject"), "vendo_billing_subscriptions", ["subject"])
    op.create_table(
        "vendo_billing_events",
        sa.Column("id", vendo.db.BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("event", sa.JSON(), nullable=False),
        sa.Column("occurred_at", T(), nullable=False),
        sa.Column("received_at", T(), nullable=False),
        sa.Column("processed_at", T(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(40), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vendo_billing_events")),
        sa.UniqueConstraint("provider", "event_id", name=op.f("uq_vendo_billing_events_provider_event_id")),
    )
    op.create_index("ix_vendo_billing_events_status", "vendo_billing_events", ["status"])
    op.create_table(
        "vendo_billing_invoices",
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("invoice_id", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("subscription_id", sa.String(255), nullable=True),
        sa.Column("customer_id", sa.String(255), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("amount_refunded", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("occurred_at", T(), nullable=False),
        sa.Column("updated_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("provider", "invoice_id", name=op.f("pk_vendo_billing_invoices")),
    )
    op.create_index(op.f("ix_vendo_billing_invoices_subject"), "vendo_billing_invoices", ["subject"])
    op.create_table(
        "vendo_billing_prices",
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("lookup_key", sa.String(255), nullable=False),
        sa.Column("price_id", sa.String(255), nullable=False),
        sa.Column("synced_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("provider", "lookup_key", name=op.f("pk_vendo_billing_prices")),
    )
    op.create_table(
        "vendo_billing_checkouts",
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("checkout_id", sa.String(255), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("subject", "idempotency_key", name=op.f("pk_vendo_billing_checkouts")),
    )


def downgrade() -> None:
    for table in ("vendo_billing_checkouts", "vendo_billing_prices", "vendo_billing_invoices",
                  "vendo_billing_events", "vendo_billing_subscriptions", "vendo_billing_customers"):
        op.drop_table(table)
