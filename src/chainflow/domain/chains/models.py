"""Tables of the chain registry."""

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chainflow.core.clock import utcnow
from chainflow.infra.db.base import Base
from chainflow.infra.db.types import UtcDateTime, WeiAmount


class Chain(Base):
    __tablename__ = "chains"

    chain_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(100))
    native_symbol: Mapped[str] = mapped_column(String(16))
    eip1559: Mapped[bool] = mapped_column(Boolean)
    confirmations: Mapped[int] = mapped_column(Integer)
    block_time_s: Mapped[float] = mapped_column(Float)
    max_fee_per_gas_cap: Mapped[int | None] = mapped_column(WeiAmount)
    max_priority_fee_per_gas_cap: Mapped[int | None] = mapped_column(WeiAmount)
    enabled: Mapped[bool] = mapped_column(Boolean)
    # One tracker per chain at a time (DESIGN §8): the worker holding this lease polls receipts.
    tracker_owner: Mapped[str | None] = mapped_column(String(64))
    tracker_lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    rpc_endpoints: Mapped[list["RpcEndpoint"]] = relationship(
        lazy="raise",
        cascade="all, delete-orphan",
        order_by="RpcEndpoint.position",
        back_populates="chain",
    )

    @property
    def rpc_urls(self) -> list[str]:
        return [endpoint.url for endpoint in self.rpc_endpoints]


class RpcEndpoint(Base):
    __tablename__ = "rpc_endpoints"
    __table_args__ = (UniqueConstraint("chain_id", "url"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chain_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("chains.chain_id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    weight: Mapped[int] = mapped_column(Integer, default=1)
    position: Mapped[int] = mapped_column(Integer, default=0)

    chain: Mapped[Chain] = relationship(lazy="raise", back_populates="rpc_endpoints")
