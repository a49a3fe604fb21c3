"""The audit log on the wire: GET /v1/audit."""

import uuid
from datetime import datetime

from pydantic import BaseModel

from chainflow.domain.audit.models import AuditEntry


class AuditRead(BaseModel):
    id: uuid.UUID
    at: datetime
    key_id: uuid.UUID | None
    actor: str
    action: str
    resource: str
    resource_id: str
    remote_addr: str | None

    @classmethod
    def of(cls, entry: AuditEntry) -> "AuditRead":
        return cls.model_validate(entry, from_attributes=True)


class AuditList(BaseModel):
    items: list[AuditRead]
    next_cursor: str | None
