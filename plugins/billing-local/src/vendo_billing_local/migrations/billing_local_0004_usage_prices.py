"""billing-local: usage reports remember the usage-based price they bill and the invoice that
billed them.

Revision ID: billing_local_0004
Revises: billing_local_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "billing_local_0004"
down_revision = "billing_local_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("billing_local_usage") as batch:
        batch.add_column(sa.Column("price_key", sa.String(255), nullable=True))
        batch.add_column(sa.Column("invoice_id", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("billing_local_usage") as batch:
        batch.drop_column("invoice_id")
        batch.drop_column("price_key")
