"""Kernel: identity (users, workspaces, memberships, invitations, refresh tokens, audit log).

Revision ID: vendo_0002
Revises: vendo_0001
"""

import sqlalchemy as sa
from alembic import op

import vendo.db

revision = "vendo_0002"
down_revision = "vendo_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vendo_users",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email_verified_at", vendo.db.UTCDateTime(), nullable=True),
        sa.Column("created_at", vendo.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vendo_users")),
        sa.UniqueConstraint("email_key", name=op.f("uq_vendo_users_email_key")),
    )
    op.create_table(
        "vendo_workspaces",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("personal", sa.Boolean(), nullable=False),
        sa.Column("created_at", vendo.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vendo_workspaces")),
    )
    op.create_table(
        "vendo_memberships",
        sa.Column("id", vendo.db.BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", vendo.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["vendo_workspaces.id"], ondelete="CASCADE",
                                name=op.f("fk_vendo_memberships_workspace_id_vendo_workspaces")),
        sa.ForeignKeyConstraint(["user_id"], ["vendo_users.id"], ondelete="CASCADE",
                                name=op.f("fk_vendo_memberships_user_id_vendo_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vendo_memberships")),
        sa.UniqueConstraint("workspace_id", "user_id", name=op.f("uq_vendo_memberships_workspace_id_user_id")),
    )
    op.create_index(op.f("ix_vendo_memberships_user_id"), "vendo_memberships", ["user_id"])
    op.create_index("uq_vendo_memberships_one_owner", "vendo_memberships", ["workspace_id"], unique=True,
                    sqlite_where=sa.text("role = 'OWNER'"), postgresql_where=sa.text("role = 'OWNER'"))
    op.create_table(
        "vendo_invitations",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("invited_by", sa.String(40), nullable=True),
        sa.Column("created_at", vendo.db.UTCDateTime(), nullable=False),
        sa.Column("expires_at", vendo.db.UTCDateTime(), nullable=False),
        sa.Column("accepted_at", vendo.db.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", vendo.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["workspace_id"], ["vendo_workspaces.id"], ondelete="CASCADE",
                                name=op.f("fk_vendo_invitations_workspace_id_vendo_workspaces")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vendo_invitations")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_vendo_invitations_token_hash")),
    )
    op.create_index(op.f("ix_vendo_invitations_workspace_id"), "vendo_invitations", ["workspace_id"])
    op.create_table(
        "vendo_refresh_tokens",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("family_id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("method", sa.String(40), nullable=False),
        sa.Column("created_at", vendo.db.UTCDateTime(), nullable=False),
        sa.Column("expires_at", vendo.db.UTCDateTime(), nullable=False),
        sa.Column("used_at", vendo.db.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", vendo.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["vendo_users.id"], ondelete="CASCADE",
                                name=op.f("fk_vendo_refresh_tokens_user_id_vendo_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vendo_refresh_tokens")),
    )
    op.create_index(op.f("ix_vendo_refresh_tokens_family_id"), "vendo_refresh_tokens", ["family_id"])
    op.create_index(op.f("ix_vendo_refresh_tokens_user_id"), "vendo_refresh_tokens", ["user_id"])
    op.create_table(
        "vendo_audit_log",
        sa.Column("id", vendo.db.BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("at", vendo.db.UTCDateTime(), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("workspace_id", sa.String(40), nullable=True),
        sa.Column("actor_id", sa.String(40), nullable=True),
        sa.Column("actor_label", sa.String(320), nullable=False),
        sa.Column("target_type", sa.String(40), nullable=False),
        sa.Column("target_id", sa.String(120), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vendo_audit_log")),
    )
    op.create_index(op.f("ix_vendo_audit_log_action"), "vendo_audit_log", ["action"])
    op.create_index(op.f("ix_vendo_audit_log_actor_id"), "vendo_audit_log", ["actor_id"])
    op.create_index("ix_vendo_audit_log_workspace_at", "vendo_audit_log", ["workspace_id", "at"])


def downgrade() -> None:
    op.drop_table("vendo_audit_log")
    op.drop_table("vendo_refresh_tokens")
    op.drop_table("vendo_invitations")
    op.drop_table("vendo_memberships")
    op.drop_table("vendo_workspaces")
    op.drop_table("vendo_users")
