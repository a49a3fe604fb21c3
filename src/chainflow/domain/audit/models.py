"""Table of the audit log: append-only, never holding a secret."""

import uuid
from datetime import datetime

from sqlalchemy import Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from chainflow.core.clock import utcnow
from chainflow.infra.db.base import Base
from chainflow.infra.db.types import UtcDateTime


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at_id", "at", "id"),
        Index("ix_audit_log_resource", "resource", "resource_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    actor: Mapped[str] = mapped_column(String(16))  # "api", "cli" or "worker"
    action: Mapped[str] = mapped_column(String(64), index=True)
    resource: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str] = mapped_column(String(128))
    remote_addr: Mapped[str | None] = mapped_column(String(64))
