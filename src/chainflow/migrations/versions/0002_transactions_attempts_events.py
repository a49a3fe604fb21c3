"""transactions attempts events

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 23:53:39.494374
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import chainflow.infra.db.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "transactions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("request", "filler", name="txkind", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("api_key_id", sa.Uuid(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("wallet_id", sa.Uuid(), nullable=False),
        sa.Column("from_address", sa.String(length=42), nullable=False),
        sa.Column("to_address", sa.String(length=42), nullable=False),
        sa.Column("value_wei", chainflow.infra.db.types.WeiAmount(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("gas_limit", sa.BigInteger(), nullable=True),
        sa.Column("max_fee_per_gas_cap", chainflow.infra.db.types.WeiAmount(), nullable=True),
        sa.Column(
            "max_priority_fee_per_gas_cap", chainflow.infra.db.types.WeiAmount(), nullable=True
        ),
        sa.Column("valid_until", chainflow.infra.db.types.UtcDateTime(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "signed",
                "submitted",
                "mined",
                "confirmed",
                "reverted",
                "failed",
                "cancelled",
                "expired",
                name="txstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("nonce", sa.BigInteger(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("final_hash", sa.String(length=66), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("block_hash", sa.String(length=66), nullable=True),
        sa.Column("gas_used", sa.BigInteger(), nullable=True),
        sa.Column("effective_gas_price_wei", chainflow.infra.db.types.WeiAmount(), nullable=True),
        sa.Column("receipt_status", sa.Integer(), nullable=True),
        sa.Column("confirmations", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.String(length=1000), nullable=True),
        sa.Column("created_at", chainflow.infra.db.types.UtcDateTime(), nullable=False),
        sa.Column("updated_at", chainflow.infra.db.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["chain_id"], ["chains.chain_id"], name=op.f("fk_transactions_chain_id_chains")
        ),
        sa.ForeignKeyConstraint(
            ["wallet_id"], ["wallets.id"], name=op.f("fk_transactions_wallet_id_wallets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactions")),
        sa.UniqueConstraint(
            "api_key_id", "idempotency_key", name=op.f("uq_transactions_api_key_id_idempotency_key")
        ),
        sa.UniqueConstraint(
            "chain_id", "wallet_id", "nonce", name=op.f("uq_transactions_chain_id_wallet_id_nonce")
        ),
    )
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.create_index("ix_transactions_chain_status", ["chain_id", "status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_transactions_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            "ix_transactions_lane_status", ["chain_id", "wallet_id", "status"], unique=False
        )

    op.create_table(
        "tx_attempts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tx_id", sa.Uuid(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("original", "bump", "cancel", name="attemptkind", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "signed",
                "submitted",
                "mined",
                "replaced",
                name="attemptstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("nonce", sa.BigInteger(), nullable=False),
        sa.Column("gas_limit", sa.BigInteger(), nullable=False),
        sa.Column("max_fee_per_gas_wei", chainflow.infra.db.types.WeiAmount(), nullable=True),
        sa.Column(
            "max_priority_fee_per_gas_wei", chainflow.infra.db.types.WeiAmount(), nullable=True
        ),
        sa.Column("gas_price_wei", chainflow.infra.db.types.WeiAmount(), nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("hash", sa.String(length=66), nullable=False),
        sa.Column("broadcast_count", sa.Integer(), nullable=False),
        sa.Column("first_sent_at", chainflow.infra.db.types.UtcDateTime(), nullable=True),
        sa.Column("last_sent_at", chainflow.infra.db.types.UtcDateTime(), nullable=True),
        sa.Column("sent_at_block", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.String(length=64), nullable=True),
        sa.Column("created_at", chainflow.infra.db.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tx_id"],
            ["transactions.id"],
            name=op.f("fk_tx_attempts_tx_id_transactions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tx_attempts")),
        sa.UniqueConstraint("hash", name=op.f("uq_tx_attempts_hash")),
    )
    with op.batch_alter_table("tx_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tx_attempts_tx_id"), ["tx_id"], unique=False)

    op.create_table(
        "tx_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tx_id", sa.Uuid(), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("at", chainflow.infra.db.types.UtcDateTime(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tx_id"],
            ["transactions.id"],
            name=op.f("fk_tx_events_tx_id_transactions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tx_events")),
    )
    with op.batch_alter_table("tx_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tx_events_tx_id"), ["tx_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("tx_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tx_events_tx_id"))

    op.drop_table("tx_events")
    with op.batch_alter_table("tx_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tx_attempts_tx_id"))

    op.drop_table("tx_attempts")
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_transactions_lane_status")
        batch_op.drop_index(batch_op.f("ix_transactions_created_at"))
        batch_op.drop_index("ix_transactions_chain_status")

    op.drop_table("transactions")
