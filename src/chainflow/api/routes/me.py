"""`GET /v1/me`: what the calling API key may do (DESIGN §13), so a client such as the console
can hide what it cannot do. Never the secret or its hash."""

import uuid
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from chainflow.api.deps import ReadKey
from chainflow.api.responses import problem_responses

router = APIRouter(prefix="/v1/me", tags=["api keys"])


class MeRead(BaseModel):
    id: uuid.UUID
    name: str | None
    prefix: str = Field(description="the key's public prefix")
    scopes: list[str] = Field(description="`admin` implies every scope; any scope implies read")
    created_at: datetime


@router.get("", responses=problem_responses(401, 403))
async def who_am_i(key: ReadKey) -> MeRead:
    """The calling key: id, name, prefix and scopes."""
    return MeRead(
        id=key.id, name=key.name, prefix=key.prefix, scopes=key.scopes, created_at=key.created_at
    )
