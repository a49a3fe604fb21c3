"""Tables of wallets and their per-chain lanes (nonce cursor and lease)."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, Enum, ForeignKey, LargeBinary, String, Uuid, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chainflow.core.clock import utcnow
from chainflow.core.types import WalletId, Wei
from chainflow.domain.wallets.kinds import SignerKind
from chainflow.infra.db.base import Base
from chainflow.infra.db.types import UtcDateTime, WeiAmount

# A lane's paused_reason while the chain's nonce is below every nonce it has in flight.
NONCE_GAP = "nonce_gap"


class WalletStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    DISABLED = "disabled"


def _values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


class Wallet(Base):
    __tablename__ = "wallets"

    id: Mapped[WalletId] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    address: Mapped[str] = mapped_column(String(42), unique=True)
    label: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[WalletStatus] = mapped_column(
        Enum(WalletStatus, native_enum=False, length=16, values_callable=_values)
    )
    signer_kind: Mapped[SignerKind] = mapped_column(
        Enum(SignerKind, native_enum=False, length=16, values_callable=_values)
    )
    key_ref: Mapped[str | None] = mapped_column(String(512))
    encrypted_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    wrapped_data_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    master_key_id: Mapped[str | None] = mapped_column(String(32), index=True)
    # Whether a spending policy applies (issue 21): read with the wallet at admission, so a
    # wallet without one costs no extra statement.
    has_policy: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    chains: Mapped[list["WalletChain"]] = relationship(
        lazy="raise", back_populates="wallet", order_by="WalletChain.chain_id"
    )

    def __repr__(self) -> str:
        return f"Wallet(id={self.id}, address={self.address}, status={self.status})"


class WalletChain(Base):
    """A lane: one wallet on one chain, with its nonce cursor and writer lease."""

    __tablename__ = "wallet_chains"

    wallet_id: Mapped[WalletId] = mapped_column(
        Uuid, ForeignKey("wallets.id", ondelete="CASCADE"), primary_key=True
    )
    chain_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("chains.chain_id"), primary_key=True, index=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    next_nonce: Mapped[int] = mapped_column(BigInteger, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    lease_fence: Mapped[int] = mapped_column(BigInteger, default=0)
    # wallet.low_balance (issue 16): the threshold (NULL = off), and whether the balance is
    # below it now: the event fires when this turns true, and re-arms when it turns false.
    low_balance_wei: Mapped[Wei | None] = mapped_column(WeiAmount)
    low_balance_alerted: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # "signer_unavailable" while the engine's last try to sign for the lane found its HSM / KMS
    # down, "bad_signature" while that try's signature did not verify, "key_unreadable" while
    # its sealed key does not decrypt (the lane waits, its nonce kept); cleared by its next
    # signature (issue 20). NONCE_GAP while the chain's
    # pending nonce is below the lane's lowest nonce in flight (set and cleared by the
    # tracker alone: a signature neither clears it nor replaces it, track/gaps.py).
    paused_reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    wallet: Mapped[Wallet] = relationship(lazy="raise", back_populates="chains")
