"""API keys on the wire: GET /v1/me (never the secret nor its hash)."""

import uuid
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel

from chainflow.domain.apikeys.models import ApiKey


class _Rate(Protocol):
    @property
    def per_s(self) -> float: ...
    @property
    def burst(self) -> int: ...


class RateRead(BaseModel):
    per_s: float
    burst: int


class MeRead(BaseModel):
    id: uuid.UUID
    name: str | None
    prefix: str  # the public part of the token, `cf_<prefix>_…`
    scopes: list[str]
    wallet_ids: list[uuid.UUID] | None  # None: every wallet
    chain_ids: list[int] | None  # None: every chain
    expires_at: datetime | None
    created_at: datetime
    read_rate: RateRead | None  # None: unlimited
    write_rate: RateRead | None

    @classmethod
    def of(cls, key: ApiKey, *, read: _Rate | None, write: _Rate | None) -> "MeRead":
        return cls(
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            scopes=list(key.scopes),
            wallet_ids=[uuid.UUID(w) for w in key.wallet_ids] if key.wallet_ids else None,
            chain_ids=list(key.chain_ids) if key.chain_ids else None,
            expires_at=key.expires_at,
            created_at=key.created_at,
            read_rate=_rate(read),
            write_rate=_rate(write),
        )


def _rate(rate: _Rate | None) -> RateRead | None:
    return None if rate is None else RateRead(per_s=rate.per_s, burst=rate.burst)
