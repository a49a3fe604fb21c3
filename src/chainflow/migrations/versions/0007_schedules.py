"""schedules and their runs (issue 19)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 03:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import chainflow.infra.db.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WEI = chainflow.infra.db.types.WeiAmount
_AT = chainflow.infra.db.types.UtcDateTime


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=16)


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("api_key_id", sa.Uuid(), nullable=True),
        sa.Column("wallet_id", sa.Uuid(), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("trigger", sa.JSON(), nullable=False),
        sa.Column("start_at", _AT(), nullable=False),
        sa.Column("end_at", _AT(), nullable=True),
        sa.Column("max_runs", sa.Integer(), nullable=True),
        sa.Column("misfire", _enum("misfire", "skip", "run_once"), nullable=False),
        sa.Column("overlap", sa.String(length=16), nullable=False),
        sa.Column("budget", _WEI(), nullable=True),
        sa.Column("spent", _WEI(), nullable=False),
        sa.Column("action", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            _enum("schedulestatus", "active", "paused", "cancelled", "completed"),
            nullable=False,
        ),
        sa.Column("next_run_at", _AT(), nullable=True),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("approval_tx_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", _AT(), nullable=False),
        sa.Column("updated_at", _AT(), nullable=False),
        sa.ForeignKeyConstraint(
            ["chain_id"], ["chains.chain_id"], name=op.f("fk_schedules_chain_id_chains")
        ),
        sa.ForeignKeyConstraint(
            ["wallet_id"], ["wallets.id"], name=op.f("fk_schedules_wallet_id_wallets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
    )
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.create_index(
            "ix_schedules_status_next_run_at", ["status", "next_run_at"], unique=False
        )
    op.create_table(
        "schedule_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("schedule_id", sa.Uuid(), nullable=False),
        sa.Column("scheduled_for", _AT(), nullable=False),
        sa.Column(
            "status",
            _enum("runstatus", "pending", "succeeded", "failed", "skipped"),
            nullable=False,
        ),
        sa.Column("transaction_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("quote_out", _WEI(), nullable=True),
        sa.Column("amount_in", _WEI(), nullable=True),
        sa.Column("created_at", _AT(), nullable=False),
        sa.Column("finished_at", _AT(), nullable=True),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_schedule_runs_schedule_id_schedules"),
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_schedule_runs_transaction_id_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_runs")),
        sa.UniqueConstraint(
            "schedule_id",
            "scheduled_for",
            name=op.f("uq_schedule_runs_schedule_id_scheduled_for"),
        ),
    )
    with op.batch_alter_table("schedule_runs", schema=None) as batch_op:
        batch_op.create_index("ix_schedule_runs_status", ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("schedule_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_schedule_runs_status")
    op.drop_table("schedule_runs")
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.drop_index("ix_schedules_status_next_run_at")
    op.drop_table("schedules")
