"""Resources one API process holds: engine, sessions, HTTP client, master key, Redis."""

from dataclasses import dataclass, field

import aiohttp
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from chainflow.api.auth_cache import KeyCache
from chainflow.api.group_commit import GroupCommit
from chainflow.core.settings import Settings
from chainflow.domain.transactions.doorbell import Doorbells
from chainflow.infra.ratelimit import LocalRateLimiter, RateLimiter
from chainflow.infra.signing.aws_kms import AwsKms
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.pkcs11 import Pkcs11Token


@dataclass(frozen=True)
class Resources:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    http: aiohttp.ClientSession
    master_key: MasterKey
    redis: Redis | None
    keys: KeyCache
    doorbells: Doorbells
    pkcs11: Pkcs11Token | None = None  # when CHAINFLOW_PKCS11_MODULE is set
    aws_kms: AwsKms | None = None  # region and credentials from the standard AWS chain
    # per-key rate limits (issue 21): in Redis when there is one, else in this process
    limiter: RateLimiter = field(default_factory=LocalRateLimiter)
    fallback: RateLimiter = field(default_factory=LocalRateLimiter)  # when Redis is silent
    # PostgreSQL with CHAINFLOW_API_GROUP_COMMIT_MS > 0: submissions stored in groups (issue 17)
    group_commit: GroupCommit | None = None
