"""Tables of schedules and of their runs (one row per occurrence)."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from chainflow.core.clock import utcnow
from chainflow.core.types import ChainId, WalletId
from chainflow.infra.db.base import Base
from chainflow.infra.db.types import UtcDateTime, WeiAmount


class ScheduleStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"  # DELETE
    COMPLETED = "completed"  # max_runs, budget, end_at or a single `at` reached


class RunStatus(StrEnum):
    PENDING = "pending"  # its transaction is not terminal yet
    SUCCEEDED = "succeeded"  # confirmed
    FAILED = "failed"  # refused at admission, reverted, failed, cancelled or expired
    SKIPPED = "skipped"  # not run: `reason` says why (overlap, misfire, max_price, budget)


class Misfire(StrEnum):
    SKIP = "skip"  # occurrences missed beyond the grace are recorded skipped
    RUN_ONCE = "run_once"  # the latest missed occurrence runs, the earlier ones are skipped


def _values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


def _enum(enum: type[StrEnum]) -> Enum:
    return Enum(enum, native_enum=False, length=16, values_callable=_values)


class Schedule(Base):
    __tablename__ = "schedules"
    __table_args__ = (Index("ix_schedules_status_next_run_at", "status", "next_run_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # The key that created it: its transactions are submitted as this key's (idempotency,
    # cancel ownership, spending policies).
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    wallet_id: Mapped[WalletId] = mapped_column(Uuid, ForeignKey("wallets.id"))
    chain_id: Mapped[ChainId] = mapped_column(BigInteger, ForeignKey("chains.chain_id"))
    trigger: Mapped[dict[str, Any]] = mapped_column(JSON)
    start_at: Mapped[datetime] = mapped_column(UtcDateTime)  # the anchor of interval triggers
    end_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    max_runs: Mapped[int | None] = mapped_column(Integer)
    misfire: Mapped[Misfire] = mapped_column(_enum(Misfire))
    overlap: Mapped[str] = mapped_column(String(16), default="skip")
    budget: Mapped[int | None] = mapped_column(WeiAmount)
    spent: Mapped[int] = mapped_column(WeiAmount, default=0)
    action: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[ScheduleStatus] = mapped_column(_enum(ScheduleStatus))
    next_run_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    runs: Mapped[int] = mapped_column(Integer, default=0)  # runs that made a transaction
    # DCA with an ERC-20 in: the approve transaction waited for before the next swap.
    approval_tx_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class ScheduleRun(Base):
    __tablename__ = "schedule_runs"
    __table_args__ = (
        UniqueConstraint("schedule_id", "scheduled_for"),  # exactly once per occurrence
        Index("ix_schedule_runs_status", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    schedule_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("schedules.id"))
    scheduled_for: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[RunStatus] = mapped_column(_enum(RunStatus))
    transaction_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("transactions.id"))
    reason: Mapped[str | None] = mapped_column(String(500))
    # DCA: the quote the swap was built on (amountOutMin derives from it), in token_out units.
    quote_out: Mapped[int | None] = mapped_column(WeiAmount)
    amount_in: Mapped[int | None] = mapped_column(WeiAmount)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
