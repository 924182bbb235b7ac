"""Kernel: the transactional outbox (events and per-subscriber deliveries).

Revision ID: vendo_0001
"""

import sqlalchemy as sa
from alembic import op

import vendo.db

revision = "vendo_0001"
down_revision = None
branch_labels = ("vendo",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vendo_outbox_events",
        sa.Column("id", vendo.db.BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("uid", sa.String(36), nullable=False),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", vendo.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vendo_outbox_events")),
        sa.UniqueConstraint("uid", name=op.f("uq_vendo_outbox_events_uid")),
    )
    op.create_index(op.f("ix_vendo_outbox_events_type"), "vendo_outbox_events", ["type"])
    op.create_table(
        "vendo_outbox_deliveries",
        sa.Column("id", vendo.db.BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("event_id", vendo.db.BigIntPK, nullable=False),
        sa.Column("subscriber", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", vendo.db.UTCDateTime(), nullable=False),
        sa.Column("locked_until", vendo.db.UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", vendo.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"], ["vendo_outbox_events.id"], ondelete="CASCADE",
            name=op.f("fk_vendo_outbox_deliveries_event_id_vendo_outbox_events"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vendo_outbox_deliveries")),
        sa.UniqueConstraint("event_id", "subscriber", name=op.f("uq_vendo_outbox_deliveries_event_id_subscriber")),
    )
    op.create_index("ix_vendo_outbox_deliveries_due", "vendo_outbox_deliveries", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_vendo_outbox_deliveries_due", table_name="vendo_outbox_deliveries")
    op.drop_table("vendo_outbox_deliveries")
    op.drop_index(op.f("ix_vendo_outbox_events_type"), table_name="vendo_outbox_events")
    op.drop_table("vendo_outbox_events")
