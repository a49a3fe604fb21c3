"""events outbox and low-balance thresholds

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 03:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import chainflow.infra.db.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=True),
        sa.Column("tx_id", sa.Uuid(), nullable=True),
        sa.Column("tx_seq", sa.Integer(), nullable=True),
        sa.Column("wallet_id", sa.Uuid(), nullable=True),
        sa.Column("chain_id", sa.BigInteger(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", chainflow.infra.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("cursor", name=op.f("uq_events_cursor")),
        sa.UniqueConstraint("event_id", name=op.f("uq_events_event_id")),
    )
    op.create_index(op.f("ix_events_created_at"), "events", ["created_at"], unique=False)
    op.create_index(op.f("ix_events_tx_id"), "events", ["tx_id"], unique=False)
    op.create_index(
        "ix_events_unsequenced",
        "events",
        ["id"],
        unique=False,
        postgresql_where=sa.text("cursor IS NULL"),
        sqlite_where=sa.text("cursor IS NULL"),
    )
    with op.batch_alter_table("wallet_chains", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("low_balance_wei", chainflow.infra.db.types.WeiAmount(), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "low_balance_alerted", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("wallet_chains", schema=None) as batch_op:
        batch_op.drop_column("low_balance_alerted")
        batch_op.drop_column("low_balance_wei")
    op.drop_index("ix_events_unsequenced", table_name="events")
    op.drop_index(op.f("ix_events_tx_id"), table_name="events")
    op.drop_index(op.f("ix_events_created_at"), table_name="events")
    op.drop_table("events")
