"""Kernel: ``dedup_key`` on outbox events, so an event can be published at most once per key.

``kernel.notify`` keys ``notification.requested`` events by their idempotency key; the
unique constraint makes two concurrent publishers of the same key publish once.

Revision ID: vendo_0007
Revises: vendo_0005
"""

import sqlalchemy as sa
from alembic import op

revision = "vendo_0007"
down_revision = "vendo_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vendo_outbox_events") as table:
        table.add_column(sa.Column("dedup_key", sa.String(255), nullable=True))
        table.create_unique_constraint(op.f("uq_vendo_outbox_events_dedup_key"), ["dedup_key"])


def downgrade() -> None:
    with op.batch_alter_table("vendo_outbox_events") as table:
        table.drop_constraint(op.f("uq_vendo_outbox_events_dedup_key"), type_="unique")
        table.drop_column("dedup_key")
