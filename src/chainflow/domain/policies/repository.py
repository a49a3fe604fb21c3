"""All SQL of spending policies."""

import uuid
from collections.abc import Iterable
from typing import Any, TypeAlias, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from chainflow.core.types import WalletId
from chainflow.domain.policies.models import WalletPolicy, WalletPolicyVersion
from chainflow.domain.wallets.models import Wallet

Executor: TypeAlias = AsyncSession | AsyncConnection
_POLICIES = cast(Table, WalletPolicy.__table__).c
_RULES = select(_POLICIES.rules).where(_POLICIES.wallet_id == bindparam("wallet_id"))
_RULES_LOCKED = _RULES.with_for_update()


async def read_rules(db: Executor, wallet_id: WalletId, *, lock: bool) -> dict[str, Any] | None:
    """The wallet's current rules, None without a policy; `lock`: FOR UPDATE, held until the
    caller's DB transaction ends (SQLite: its BEGIN IMMEDIATE already serialises writers)."""
    query = _RULES_LOCKED if lock else _RULES
    rules = (await db.execute(query, {"wallet_id": wallet_id})).scalar_one_or_none()
    return cast(dict[str, Any] | None, rules)


async def lock_in_order(db: Executor, wallet_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Lock these wallets' policy rows (those that exist) all at once, in id order: a batch or
    a schedule pass then admitting its requests wallet by wallet, in its own order, cannot
    deadlock with another holding some of the same rows (audit: two batches naming two
    wallets in opposite orders deadlocked, a 500). The wallets whose rows were locked."""
    ids = sorted(set(wallet_ids))
    if not ids:
        return set()
    query = select(_POLICIES.wallet_id).where(_POLICIES.wallet_id.in_(ids))
    locked = await db.execute(query.order_by(_POLICIES.wallet_id).with_for_update())
    return {uuid.UUID(str(row)) for row in locked.scalars().all()}


async def get_current(session: AsyncSession, wallet_id: WalletId) -> WalletPolicy | None:
    return await session.get(WalletPolicy, wallet_id)


async def lock_wallet(session: AsyncSession, wallet_id: WalletId) -> Wallet | None:
    """The wallet row, locked: policy changes of one wallet take turns. `FOR NO KEY UPDATE`,
    not `FOR UPDATE`: an admission holds the policy row (spending.py) and then inserts its
    request, whose foreign key check share-locks this wallet row (`FOR KEY SHARE`); `FOR
    UPDATE` here conflicted with that while this change waited for the policy row, and
    PostgreSQL aborted one of the two as a deadlock (500s for both under load)."""
    query = select(Wallet).where(Wallet.id == wallet_id).with_for_update(key_share=True)
    return (await session.scalars(query)).one_or_none()


async def get_version(
    session: AsyncSession, wallet_id: WalletId, version: int
) -> WalletPolicyVersion | None:
    return await session.get(WalletPolicyVersion, (wallet_id, version))


async def list_versions(session: AsyncSession, wallet_id: WalletId) -> list[WalletPolicyVersion]:
    query = (
        select(WalletPolicyVersion)
        .where(WalletPolicyVersion.wallet_id == wallet_id)
        .order_by(WalletPolicyVersion.version)
    )
    return list(await session.scalars(query))
