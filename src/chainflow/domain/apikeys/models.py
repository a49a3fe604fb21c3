"""Table of API keys (hash only)."""

import uuid
from datetime import datetime

from sqlalchemy import JSON, Float, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from chainflow.core.clock import utcnow
from chainflow.infra.db.base import Base
from chainflow.infra.db.types import UtcDateTime


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str | None] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Restrictions (issue 21): None means every wallet / chain; rates in requests per second.
    wallet_ids: Mapped[list[str] | None] = mapped_column(JSON)
    chain_ids: Mapped[list[int] | None] = mapped_column(JSON)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    read_rate_per_s: Mapped[float | None] = mapped_column(Float)
    write_rate_per_s: Mapped[float | None] = mapped_column(Float)
