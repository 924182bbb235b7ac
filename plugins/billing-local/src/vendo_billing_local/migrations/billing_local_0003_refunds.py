"""billing-local: refunds, and the checkout an invoice was paid by.

Revision ID: billing_local_0003
Revises: billing_local_0002
"""

import sqlalchemy as sa
from alembic import op

import vendo.db

revision = "billing_local_0003"
down_revision = "billing_local_0002"
branch_labels = None
depends_on = None

T = vendo.db.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("billing_local_invoices") as batch:
        batch.add_column(sa.Column("checkout_id", sa.String(40), nullable=True))
    op.create_table(
        "billing_local_refunds",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("idempotency_key", sa.String(300), nullable=True),
        sa.Column("invoice_id", sa.String(40), nullable=False),
        sa.Column("subscription_id", sa.String(40), nullable=True),
        sa.Column("checkout_id", sa.String(40), nullable=True),
        sa.Column("customer_id", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_local_refunds")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_billing_local_refunds_idempotency_key")),
    )
    op.create_index(op.f("ix_billing_local_refunds_invoice_id"), "billing_local_refunds", ["invoice_id"])


def downgrade() -> None:
    op.drop_table("billing_local_refunds")
    with op.batch_alter_table("billing_local_invoices") as batch:
        batch.drop_column("checkout_id")
