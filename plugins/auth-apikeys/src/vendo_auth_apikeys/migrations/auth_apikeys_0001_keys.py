"""auth-apikeys: the API keys table.

Revision ID: auth_apikeys_0001
Depends on: vendo_0002 (users and workspaces)
"""

import sqlalchemy as sa
from alembic import op

import vendo.db

revision = "auth_apikeys_0001"
down_revision = None
branch_labels = ("auth-apikeys",)
depends_on = "vendo_0002"


def upgrade() -> None:
    op.create_table(
        "auth_apikeys_keys",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("created_by", sa.String(40), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("environment", sa.String(8), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("rate_limit_tier", sa.String(40), nullable=False),
        sa.Column("created_at", vendo.db.UTCDateTime(), nullable=False),
        sa.Column("expires_at", vendo.db.UTCDateTime(), nullable=True),
        sa.Column("last_used_at", vendo.db.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", vendo.db.UTCDateTime(), nullable=True),
        sa.Column("rotated_at", vendo.db.UTCDateTime(), nullable=True),
        sa.Column("grace_until", vendo.db.UTCDateTime(), nullable=True),
        sa.Column("replaced_by", sa.String(16), nullable=True),
        sa.Column("rotated_from", sa.String(16), nullable=True),
        sa.ForeignKeyConstraint(["workspace_id"], ["vendo_workspaces.id"], ondelete="CASCADE",
                                name=op.f("fk_auth_apikeys_keys_workspace_id_vendo_workspaces")),
        sa.ForeignKeyConstraint(["created_by"], ["vendo_users.id"], ondelete="CASCADE",
                                name=op.f("fk_auth_apikeys_keys_created_by_vendo_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_apikeys_keys")),
    )
    op.create_index(op.f("ix_auth_apikeys_keys_created_by"), "auth_apikeys_keys", ["created_by"])
    op.create_index("ix_auth_apikeys_keys_workspace_created", "auth_apikeys_keys", ["workspace_id", "created_at"])


def downgrade() -> None:
    op.drop_table("auth_apikeys_keys")
