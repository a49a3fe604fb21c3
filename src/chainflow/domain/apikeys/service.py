"""Use cases of API keys: create (shown once), list, revoke, authenticate in constant time,
check scopes."""

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.clock import utcnow
from chainflow.core.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from chainflow.domain.apikeys.models import ApiKey
from chainflow.domain.apikeys.restrictions import stored_chain_ids, stored_wallet_ids

_TOKEN_PREFIX = "cf"  # noqa: S105 - a public marker, not a secret
# A fixed hash compared when the prefix is unknown, so a miss costs the same as a hit.
_DUMMY_HASH = hashlib.sha256(b"chainflow-no-such-key").hexdigest()


class Scope(StrEnum):
    ADMIN = "admin"
    WALLETS = "wallets"
    TRANSACTIONS_WRITE = "transactions:write"
    READ = "read"
    WEBHOOKS = "webhooks"  # DESIGN §13 (issue 16)
    SCHEDULES = "schedules"  # issue 19
    POLICIES = "policies"


class UnknownScope(InvalidInput):
    code = "unknown_scope"


class InsufficientScope(Forbidden):
    code = "insufficient_scope"


class InvalidApiKey(Unauthorized):
    code = "invalid_api_key"


class ApiKeyExpired(InvalidApiKey):
    code = "api_key_expired"


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"


def parse_scopes(names: Iterable[str]) -> list[Scope]:
    """Validate scope names. Raises: UnknownScope, naming the valid ones."""
    scopes: list[Scope] = []
    for name in names:
        try:
            scopes.append(Scope(name.strip()))
        except ValueError:
            valid = ", ".join(scope.value for scope in Scope)
            raise UnknownScope(f"unknown scope {name!r}; valid scopes: {valid}") from None
    if not scopes:
        raise UnknownScope("give at least one scope")
    return sorted(set(scopes))


def _hash(secret: str) -> str:
    # API keys are 256-bit random, so a fast hash suffices (no password stretching needed).
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class KeyLimits:
    """What a new key is limited to (issue 21); the defaults restrict nothing."""

    wallet_ids: Sequence[uuid.UUID] = ()
    chain_ids: Sequence[int] = ()
    expires_at: datetime | None = None
    rate_per_s: float | None = None  # reads and writes each (None: the settings' defaults)


async def create_api_key(
    session: AsyncSession,
    scopes: Iterable[str],
    *,
    name: str | None = None,
    limits: KeyLimits | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key's hash; return the row and the plaintext key, which is never stored."""
    parsed = parse_scopes(scopes)
    limits = limits or KeyLimits()
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(
        name=name,
        prefix=prefix,
        secret_hash=_hash(secret),
        scopes=list(parsed),
        wallet_ids=stored_wallet_ids(limits.wallet_ids),
        chain_ids=stored_chain_ids(limits.chain_ids),
        expires_at=limits.expires_at,
        read_rate_per_s=limits.rate_per_s,
        write_rate_per_s=limits.rate_per_s,
    )
    session.add(row)
    await session.flush()
    return row, f"{_TOKEN_PREFIX}_{prefix}_{secret}"


async def list_api_keys(session: AsyncSession) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    return list(await session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


async def revoke_api_key(session: AsyncSession, key_id: uuid.UUID) -> tuple[ApiKey, bool]:
    """Revoke a key; return it and whether this call revoked it (a second revoke keeps the
    first time). Every API process refuses it once its cached copy expires
    (`CHAINFLOW_API_KEY_CACHE_S`). Raises: ApiKeyNotFound."""
    row = await session.get(ApiKey, key_id, with_for_update=True)
    if row is None:
        raise ApiKeyNotFound(f"API key {key_id} does not exist")
    if row.revoked_at is not None:
        return row, False
    row.revoked_at = utcnow()
    await session.flush()
    return row, True


async def authenticate(session: AsyncSession, token: str) -> ApiKey:
    """Return the live key for a bearer token. Raises: InvalidApiKey."""
    parts = token.split("_", 2)
    prefix = parts[1] if len(parts) == 3 and parts[0] == _TOKEN_PREFIX else ""
    row = (
        (await session.scalars(select(ApiKey).where(ApiKey.prefix == prefix))).one_or_none()
        if prefix
        else None
    )
    expected = row.secret_hash if row is not None else _DUMMY_HASH
    matches = hmac.compare_digest(expected, _hash(parts[-1]))
    if row is None or not matches or row.revoked_at is not None:
        raise InvalidApiKey("the API key is missing, wrong or revoked")
    check_unexpired(row)
    return row


def check_unexpired(key: ApiKey) -> None:
    """Raises: ApiKeyExpired once the key's expiry has passed (also for a cached key)."""
    if key.expires_at is not None and key.expires_at <= utcnow():
        raise ApiKeyExpired("the API key has expired")


class KeyGone(NamedTuple):
    """Why a stored key can no longer act for its owner."""

    code: str  # api_key_revoked, api_key_expired, api_key_not_found or insufficient_scope
    # revoked, expired, deleted or without transactions:write: no id, no time (`schedules` keys
    # and webhook receivers see it)
    state: str


async def why_not_live(
    session: AsyncSession, key_id: uuid.UUID, *, now: datetime, lock: bool = False
) -> KeyGone | None:
    """Why a stored key can no longer send transactions for its owner (revoked, expired, gone,
    or without `transactions:write`: a schedule created before a schedule needed it); None
    while it can. For work done later in its name (a schedule's runs).

    `lock`: the key's row is locked `FOR NO KEY UPDATE` until the caller's transaction ends:
    a revoke (an UPDATE, the same lock) in flight is waited for and then seen, and one that
    starts later waits for the caller's commit, so work checked here never commits after a
    revocation did (PostgreSQL; SQLite has one writer). Exclusive, not `FOR SHARE`: share
    locks are granted past a waiting revoke, so passes that overlap could hold it off for
    ever (review); this way passes of one key's schedules take turns, and a revoke waits for
    the pass ahead of it only."""
    query = select(ApiKey).where(ApiKey.id == key_id).execution_options(populate_existing=True)
    if lock:
        query = query.with_for_update(key_share=True)  # FOR NO KEY UPDATE
    row = (await session.execute(query)).scalar_one_or_none()
    if row is None:
        return KeyGone("api_key_not_found", "deleted")
    if row.revoked_at is not None:
        return KeyGone("api_key_revoked", "revoked")
    if row.expires_at is not None and row.expires_at <= now:
        return KeyGone("api_key_expired", "expired")
    if not may_send(row):
        return KeyGone(InsufficientScope.code, "without the transactions:write scope")
    return None


async def lock_keys(session: AsyncSession, key_ids: Iterable[uuid.UUID]) -> None:
    """Lock these keys' rows as `why_not_live(lock=True)` does, all at once and in id order:
    a pass that then checks its schedules' owners one by one, in its own order, cannot
    deadlock with another pass holding some of the same keys (review)."""
    ids = sorted(set(key_ids))
    if ids:
        query = select(ApiKey.id).where(ApiKey.id.in_(ids)).order_by(ApiKey.id)
        await session.execute(query.with_for_update(key_share=True))  # FOR NO KEY UPDATE


def may_send(key: ApiKey) -> bool:
    """Whether the key may submit transactions (`transactions:write` or admin)."""
    return Scope.ADMIN.value in key.scopes or Scope.TRANSACTIONS_WRITE.value in key.scopes


def require_scope(key: ApiKey, scope: Scope) -> None:
    """Raises: InsufficientScope unless the key has `scope` or admin (any scope implies read)."""
    if Scope.ADMIN.value in key.scopes or scope.value in key.scopes:
        return
    if scope is Scope.READ and key.scopes:
        return
    raise InsufficientScope(f"this API key lacks the {scope.value!r} scope")


def is_admin(key: ApiKey) -> bool:
    return Scope.ADMIN.value in key.scopes
