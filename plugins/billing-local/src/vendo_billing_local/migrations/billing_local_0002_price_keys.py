"""billing-local: subscriptions remember the synced price they are billed at.

Revision ID: billing_local_0002
Revises: billing_local_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "billing_local_0002"
down_revision = "billing_local_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("billing_local_subscriptions") as batch:
        batch.add_column(sa.Column("price_key", sa.String(255), nullable=True))
        batch.add_column(sa.Column("scheduled_price_key", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("billing_local_subscriptions") as batch:
        batch.drop_column("scheduled_price_key")
        batch.drop_column("price_key")
