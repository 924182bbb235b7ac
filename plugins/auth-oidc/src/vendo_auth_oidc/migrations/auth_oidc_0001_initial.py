"""auth-oidc: pending sign-ins (state, nonce, PKCE verifier) and identity links.

Revision ID: auth_oidc_0001
Depends on: vendo_0002 (the kernel's users)
"""

import sqlalchemy as sa
from alembic import op

revision = "auth_oidc_0001"
down_revision = None
branch_labels = ("auth-oidc",)
depends_on = "vendo_0002"


def upgrade() -> None:
    op.create_table(
        "auth_oidc_states",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("nonce", sa.String(128), nullable=False),
        sa.Column("code_verifier", sa.String(512), nullable=False),
        sa.Column("browser_hash", sa.String(64), nullable=True),
        sa.Column("next_url", sa.String(2048), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_oidc_states")),
    )
    op.create_index(op.f("ix_auth_oidc_states_expires_at"), "auth_oidc_states", ["expires_at"])
    op.create_table(
        "auth_oidc_links",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_verified", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_oidc_links")),
        sa.UniqueConstraint("provider", "subject", name=op.f("uq_auth_oidc_links_provider_subject")),
        sa.ForeignKeyConstraint(["user_id"], ["vendo_users.id"], ondelete="CASCADE",
                                name=op.f("fk_auth_oidc_links_user_id_vendo_users")),
    )
    op.create_index(op.f("ix_auth_oidc_links_user_id"), "auth_oidc_links", ["user_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_auth_oidc_links_user_id"), table_name="auth_oidc_links")
    op.drop_table("auth_oidc_links")
    op.drop_index(op.f("ix_auth_oidc_states_expires_at"), table_name="auth_oidc_states")
    op.drop_table("auth_oidc_states")
