"""Tables of transaction requests, their signed attempts and their append-only event log."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import TypeAlias

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chainflow.core.clock import utcnow
from chainflow.core.types import AttemptId, ChainId, Nonce, TxHash, TxId, WalletId, Wei
from chainflow.domain.transactions.state import AttemptKind as AttemptKind
from chainflow.domain.transactions.state import AttemptStatus as AttemptStatus
from chainflow.domain.transactions.state import TxKind as TxKind
from chainflow.domain.transactions.state import TxStatus
from chainflow.infra.db.base import Base
from chainflow.infra.db.types import UtcDateTime, WeiAmount

# What a tx_events row says beyond its statuses (a JSON object): the hash, the code, the
# nonce released, ... Only scalars: webhooks render it as it is.
DetailValue: TypeAlias = str | int | None
EventDetail: TypeAlias = dict[str, DetailValue]


# The condition of ix_tx_attempts_refused, and of the queries that must use it.
REFUSED_FOR_FUNDS_SQL = "last_error = 'insufficient_funds'"


def _values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


def _enum(enum: type[StrEnum]) -> Enum:
    return Enum(enum, native_enum=False, length=16, values_callable=_values)


class Transaction(Base):
    __tablename__ = "transactions"
    __table_args__ = (
        UniqueConstraint("api_key_id", "idempotency_key"),
        UniqueConstraint("chain_id", "wallet_id", "nonce"),
        # Every status change writes an entry in each index (status is indexed, so no UPDATE
        # of it is HOT): one index serves the chain's (tracker, lane stats, lanes with queued
        # work) and the lane's (drain, in flight, waiting for funds) reads by status, with
        # the status before the wallet (migration 0010_pg_hot, docs/performance.md).
        Index("ix_transactions_chain_status", "chain_id", "status", "wallet_id"),
        # The value a wallet sent in a rolling window (spending policies, issue 21).
        Index("ix_transactions_wallet_chain_created", "wallet_id", "chain_id", "created_at"),
    )

    id: Mapped[TxId] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    kind: Mapped[TxKind] = mapped_column(_enum(TxKind), default=TxKind.REQUEST)
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    chain_id: Mapped[ChainId] = mapped_column(BigInteger, ForeignKey("chains.chain_id"))
    wallet_id: Mapped[WalletId] = mapped_column(Uuid, ForeignKey("wallets.id"))
    from_address: Mapped[str] = mapped_column(String(42))
    to_address: Mapped[str] = mapped_column(String(42))
    value_wei: Mapped[Wei] = mapped_column(WeiAmount)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    gas_limit: Mapped[int | None] = mapped_column(BigInteger)
    max_fee_per_gas_cap: Mapped[Wei | None] = mapped_column(WeiAmount)
    max_priority_fee_per_gas_cap: Mapped[Wei | None] = mapped_column(WeiAmount)
    valid_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    status: Mapped[TxStatus] = mapped_column(_enum(TxStatus))
    nonce: Mapped[Nonce | None] = mapped_column(BigInteger)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    final_hash: Mapped[TxHash | None] = mapped_column(String(66))
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    block_hash: Mapped[str | None] = mapped_column(String(66))
    gas_used: Mapped[int | None] = mapped_column(BigInteger)
    effective_gas_price_wei: Mapped[Wei | None] = mapped_column(WeiAmount)
    receipt_status: Mapped[int | None] = mapped_column(Integer)
    confirmations: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    attempts: Mapped[list["TxAttempt"]] = relationship(
        lazy="raise",
        back_populates="tx",
        order_by="TxAttempt.created_at",
        primaryjoin="Transaction.id == foreign(TxAttempt.tx_id)",
    )
    events: Mapped[list["TxEventRow"]] = relationship(
        lazy="raise",
        back_populates="tx",
        order_by="TxEventRow.id",
        primaryjoin="Transaction.id == foreign(TxEventRow.tx_id)",
    )


class TxAttempt(Base):
    """One signed variant of a request at its nonce: original, fee bump or cancel."""

    __tablename__ = "tx_attempts"
    # Room on each page for a new version of each of its rows: a round's attempts are
    # inserted together and updated together (sent, then mined), and none of the columns
    # those UPDATEs set is indexed, so with room they are HOT and write no index entry. 64
    # attempts a round, 50 rounds: HOT 5% of updates at fillfactor 100, 39% at 80, 97% at 50,
    # and the table is 25% smaller at 50 (no versions moved to other pages) (issue 17).
    __table_args__ = (
        # The attempts a node refused for lack of funds, which hold their lane back: every
        # round asks, for each lane with queued requests, whether one of its signed requests
        # has one. Without it that was a probe of ix_tx_attempts_tx_id and a heap read per
        # signed request of the lane (~13 per confirmed transaction in a batch run); the
        # index holds only attempts a node refused for lack of funds (docs/performance.md
        # item 45). Its predicate must be in the query as a literal, not a bound parameter,
        # for the planner to match it (queries.REFUSED_FOR_FUNDS). An accepted send of an
        # attempt never refused stays HOT (last_error NULL to NULL is no change to
        # PostgreSQL); a refusal, or an accept after one, changes a predicate's column and
        # writes index entries.
        Index(
            "ix_tx_attempts_refused",
            "tx_id",
            postgresql_where=text(REFUSED_FOR_FUNDS_SQL),
            sqlite_where=text(REFUSED_FOR_FUNDS_SQL),
        ),
        {"postgresql_with": {"fillfactor": 50}},
    )

    id: Mapped[AttemptId] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # No foreign key (migration 0014): on PostgreSQL each row's check queried and locked its
    # request row (FOR KEY SHARE), ~6 per confirmed transaction with tx_events'. These rows
    # are written only in the DB transaction that inserts or updates their request, and no
    # request is deleted, so the check could not fail (docs/performance.md item 45).
    tx_id: Mapped[TxId] = mapped_column(Uuid, index=True)
    kind: Mapped[AttemptKind] = mapped_column(_enum(AttemptKind))
    status: Mapped[AttemptStatus] = mapped_column(_enum(AttemptStatus))
    nonce: Mapped[Nonce] = mapped_column(BigInteger)
    gas_limit: Mapped[int] = mapped_column(BigInteger)
    max_fee_per_gas_wei: Mapped[Wei | None] = mapped_column(WeiAmount)
    max_priority_fee_per_gas_wei: Mapped[Wei | None] = mapped_column(WeiAmount)
    gas_price_wei: Mapped[Wei | None] = mapped_column(WeiAmount)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    hash: Mapped[TxHash] = mapped_column(String(66), unique=True)
    broadcast_count: Mapped[int] = mapped_column(Integer, default=0)
    first_sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    sent_at_block: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    tx: Mapped[Transaction] = relationship(
        lazy="raise",
        back_populates="attempts",
        primaryjoin="foreign(TxAttempt.tx_id) == Transaction.id",
    )


class TxEventRow(Base):
    """Append-only log of status changes; feeds webhooks and streams."""

    __tablename__ = "tx_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    # No foreign key, as tx_attempts.tx_id (migration 0014).
    tx_id: Mapped[TxId] = mapped_column(Uuid, index=True)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    detail: Mapped[EventDetail | None] = mapped_column(JSON)

    tx: Mapped[Transaction] = relationship(
        lazy="raise",
        back_populates="events",
        primaryjoin="foreign(TxEventRow.tx_id) == Transaction.id",
    )
