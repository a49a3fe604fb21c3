"""Tables of spending policies: the current policy of each wallet, and every version of it."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from chainflow.core.clock import utcnow
from chainflow.core.types import WalletId
from chainflow.infra.db.base import Base
from chainflow.infra.db.types import UtcDateTime


class WalletPolicy(Base):
    """The current policy of one wallet. Admission locks this row (FOR UPDATE), so the
    requests of one wallet that has a policy are admitted one at a time (issue 21)."""

    __tablename__ = "wallet_policies"

    wallet_id: Mapped[WalletId] = mapped_column(
        Uuid, ForeignKey("wallets.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer)
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class WalletPolicyVersion(Base):
    """Every policy a wallet ever had, append-only."""

    __tablename__ = "wallet_policy_versions"

    wallet_id: Mapped[WalletId] = mapped_column(
        Uuid, ForeignKey("wallets.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
