"""Kernel: the usage journal, ``applied`` flags on ledger entries and holds.

A ledger entry (or a hold's move) recorded while the counter store was unreachable is kept
with ``applied = false`` until ``kernel.entitlements.apply_journal()`` moves the store; a
partial index finds those rows without scanning the ledger. Existing rows are applied.

Revision ID: vendo_0004
Revises: vendo_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "vendo_0004"
down_revision = "vendo_0003"
branch_labels = None
depends_on = None

# Rows waiting in the journal; each planner matches the queries' ``applied = false`` to it.
PENDING = {"postgresql_where": sa.text("NOT applied"), "sqlite_where": sa.text("applied = 0")}


def upgrade() -> None:
    with op.batch_alter_table("vendo_usage_ledger") as table:
        table.add_column(sa.Column("applied", sa.Boolean(), nullable=False, server_default=sa.true()))
    with op.batch_alter_table("vendo_usage_holds") as table:
        table.add_column(sa.Column("applied", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.create_index("ix_vendo_usage_ledger_pending", "vendo_usage_ledger", ["id"], **PENDING)
    op.create_index("ix_vendo_usage_holds_pending", "vendo_usage_holds", ["id"], **PENDING)


def downgrade() -> None:
    op.drop_index("ix_vendo_usage_holds_pending", table_name="vendo_usage_holds")
    op.drop_index("ix_vendo_usage_ledger_pending", table_name="vendo_usage_ledger")
    with op.batch_alter_table("vendo_usage_holds") as table:
        table.drop_column("applied")
    with op.batch_alter_table("vendo_usage_ledger") as table:
        table.drop_column("applied")
