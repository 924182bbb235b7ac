"""Kernel: the AI vault (workspaces' own provider keys, encrypted) and API-key AI budgets.

Revision ID: vendo_0008
Revises: vendo_0007
"""

import sqlalchemy as sa
from alembic import op

from vendo.db import UTCDateTime

revision = "vendo_0008"
down_revision = "vendo_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vendo_ai_credentials",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("workspace", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(80), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("rotated_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vendo_ai_credentials")),
        sa.UniqueConstraint("workspace", "provider", name=op.f("uq_vendo_ai_credentials_workspace_provider")),
    )
    op.create_index(op.f("ix_vendo_ai_credentials_workspace"), "vendo_ai_credentials", ["workspace"])
    op.create_table(
        "vendo_ai_key_budgets",
        sa.Column("workspace", sa.String(64), nullable=False),
        sa.Column("api_key_id", sa.String(64), nullable=False),
        sa.Column("monthly_usd", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("workspace", "api_key_id", name=op.f("pk_vendo_ai_key_budgets")),
    )


def downgrade() -> None:
    op.drop_table("vendo_ai_key_budgets")
    op.drop_index("ix_vendo_ai_credentials_workspace", table_name="vendo_ai_credentials")
    op.drop_table("vendo_ai_credentials")
