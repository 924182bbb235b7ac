"""auth-password: password credentials, single-use tokens, recovery codes, throttled attempts.

Revision ID: auth_password_0001
Revises: (branch auth-password, depends on the kernel's identity revision vendo_0002)
"""

import sqlalchemy as sa
from alembic import op

revision = "auth_password_0001"
down_revision = None
branch_labels = ("auth-password",)
depends_on = "vendo_0002"

# The kernel's UTC timestamps are DateTime(timezone=True) underneath.
UTC = sa.DateTime(timezone=True)
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "auth_password_credentials",
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.Column("locked_until", UTC, nullable=True),
        sa.Column("last_failed_at", UTC, nullable=True),
        sa.Column("last_login_at", UTC, nullable=True),
        sa.Column("totp_secret", sa.Text(), nullable=True),
        sa.Column("totp_enabled", sa.Boolean(), nullable=False),
        sa.Column("totp_enabled_at", UTC, nullable=True),
        sa.Column("totp_last_step", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("password_changed_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["vendo_users.id"], ondelete="CASCADE",
                                name=op.f("fk_auth_password_credentials_user_id_vendo_users")),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_auth_password_credentials")),
    )
    op.create_table(
        "auth_password_tokens",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("purpose", sa.String(20), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
        sa.Column("used_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["vendo_users.id"], ondelete="CASCADE",
                                name=op.f("fk_auth_password_tokens_user_id_vendo_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_password_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_auth_password_tokens_token_hash")),
    )
    op.create_index(op.f("ix_auth_password_tokens_user_id"), "auth_password_tokens", ["user_id"])
    op.create_table(
        "auth_password_recovery_codes",
        sa.Column("id", BIGINT_PK, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("used_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["vendo_users.id"], ondelete="CASCADE",
                                name=op.f("fk_auth_password_recovery_codes_user_id_vendo_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_password_recovery_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_auth_password_recovery_codes_code_hash")),
    )
    op.create_index(op.f("ix_auth_password_recovery_codes_user_id"), "auth_password_recovery_codes", ["user_id"])
    op.create_table(
        "auth_password_attempts",
        sa.Column("id", BIGINT_PK, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(64), nullable=True),
        sa.Column("at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_password_attempts")),
    )
    op.create_index(op.f("ix_auth_password_attempts_at"), "auth_password_attempts", ["at"])
    op.create_index("ix_auth_password_attempts_ip_at", "auth_password_attempts", ["ip", "at"])
    op.create_index("ix_auth_password_attempts_subject_at", "auth_password_attempts", ["subject", "at"])


def downgrade() -> None:
    op.drop_table("auth_password_attempts")
    op.drop_table("auth_password_recovery_codes")
    op.drop_table("auth_password_tokens")
    op.drop_table("auth_password_credentials")
