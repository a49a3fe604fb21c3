"""guardrails: spending policies, restricted API keys, audit log (issue 21)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 03:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import chainflow.infra.db.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "wallet_policies",
        sa.Column("wallet_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("updated_at", chainflow.infra.db.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["wallet_id"],
            ["wallets.id"],
            name=op.f("fk_wallet_policies_wallet_id_wallets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("wallet_id", name=op.f("pk_wallet_policies")),
    )
    op.create_table(
        "wallet_policy_versions",
        sa.Column("wallet_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("created_at", chainflow.infra.db.types.UtcDateTime(), nullable=False),
        sa.Column("created_by_key_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["wallet_id"],
            ["wallets.id"],
            name=op.f("fk_wallet_policy_versions_wallet_id_wallets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("wallet_id", "version", name=op.f("pk_wallet_policy_versions")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("at", chainflow.infra.db.types.UtcDateTime(), nullable=False),
        sa.Column("key_id", sa.Uuid(), nullable=True),
        sa.Column("actor", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("resource", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.String(length=128), nullable=False),
        sa.Column("remote_addr", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_at_id", "audit_log", ["at", "id"], unique=False)
    op.create_index("ix_audit_log_resource", "audit_log", ["resource", "resource_id"], unique=False)
    op.create_index(op.f("ix_audit_log_action"), "audit_log", ["action"], unique=False)
    op.create_index(op.f("ix_audit_log_key_id"), "audit_log", ["key_id"], unique=False)
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("wallet_ids", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("chain_ids", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("expires_at", chainflow.infra.db.types.UtcDateTime(), nullable=True)
        )
        batch_op.add_column(sa.Column("read_rate_per_s", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("write_rate_per_s", sa.Float(), nullable=True))
    with op.batch_alter_table("wallets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("has_policy", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_transactions_wallet_chain_created",
            ["wallet_id", "chain_id", "created_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_transactions_wallet_chain_created")
    with op.batch_alter_table("wallets", schema=None) as batch_op:
        batch_op.drop_column("has_policy")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("write_rate_per_s")
        batch_op.drop_column("read_rate_per_s")
        batch_op.drop_column("expires_at")
        batch_op.drop_column("chain_ids")
        batch_op.drop_column("wallet_ids")
    op.drop_index(op.f("ix_audit_log_key_id"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_action"), table_name="audit_log")
    op.drop_index("ix_audit_log_resource", table_name="audit_log")
    op.drop_index("ix_audit_log_at_id", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("wallet_policy_versions")
    op.drop_table("wallet_policies")
