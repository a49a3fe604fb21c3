"""foundation schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 23:06:41.192344
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from chainflow.infra.db.types import UtcDateTime, WeiAmount

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    op.create_table(
        "chains",
        sa.Column("chain_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("native_symbol", sa.String(length=16), nullable=False),
        sa.Column("eip1559", sa.Boolean(), nullable=False),
        sa.Column("confirmations", sa.Integer(), nullable=False),
        sa.Column("block_time_s", sa.Float(), nullable=False),
        sa.Column("max_fee_per_gas_cap", WeiAmount(), nullable=True),
        sa.Column("max_priority_fee_per_gas_cap", WeiAmount(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", name=op.f("pk_chains")),
    )
    op.create_table(
        "wallets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "active", "paused", "disabled", name="walletstatus", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column(
            "signer_kind",
            sa.Enum("local", name="signerkind", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("key_ref", sa.String(length=512), nullable=True),
        sa.Column("encrypted_key", sa.LargeBinary(), nullable=True),
        sa.Column("wrapped_data_key", sa.LargeBinary(), nullable=True),
        sa.Column("master_key_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallets")),
        sa.UniqueConstraint("address", name=op.f("uq_wallets_address")),
    )
    with op.batch_alter_table("wallets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_wallets_master_key_id"), ["master_key_id"], unique=False
        )

    op.create_table(
        "rpc_endpoints",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["chain_id"],
            ["chains.chain_id"],
            name=op.f("fk_rpc_endpoints_chain_id_chains"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rpc_endpoints")),
        sa.UniqueConstraint("chain_id", "url", name=op.f("uq_rpc_endpoints_chain_id_url")),
    )
    with op.batch_alter_table("rpc_endpoints", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rpc_endpoints_chain_id"), ["chain_id"], unique=False)

    op.create_table(
        "wallet_chains",
        sa.Column("wallet_id", sa.Uuid(), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("next_nonce", sa.BigInteger(), nullable=False),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", UtcDateTime(), nullable=True),
        sa.Column("lease_fence", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["chain_id"], ["chains.chain_id"], name=op.f("fk_wallet_chains_chain_id_chains")
        ),
        sa.ForeignKeyConstraint(
            ["wallet_id"],
            ["wallets.id"],
            name=op.f("fk_wallet_chains_wallet_id_wallets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("wallet_id", "chain_id", name=op.f("pk_wallet_chains")),
    )
    with op.batch_alter_table("wallet_chains", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_wallet_chains_chain_id"), ["chain_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("wallet_chains", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wallet_chains_chain_id"))

    op.drop_table("wallet_chains")
    with op.batch_alter_table("rpc_endpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rpc_endpoints_chain_id"))

    op.drop_table("rpc_endpoints")
    with op.batch_alter_table("wallets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wallets_master_key_id"))

    op.drop_table("wallets")
    op.drop_table("chains")
    op.drop_table("api_keys")
