"""All SQL of wallets and lanes."""

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import NamedTuple, cast

from sqlalchemy import ColumnElement, Table, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import selectinload

from chainflow.core.types import WalletId
from chainflow.domain.wallets.models import NONCE_GAP, Wallet, WalletChain
from chainflow.infra.db.bulk import update_rows
from chainflow.infra.db.lease_clock import LeaseTime
from chainflow.infra.db.params import one_of


async def get(session: AsyncSession, wallet_id: uuid.UUID, *, lanes: bool = True) -> Wallet | None:
    query = select(Wallet).where(Wallet.id == wallet_id)
    if lanes:
        query = query.options(selectinload(Wallet.chains))
    return (await session.scalars(query)).one_or_none()


async def get_by_address(session: AsyncSession, address: str) -> Wallet | None:
    query = select(Wallet).where(Wallet.address == address).options(selectinload(Wallet.chains))
    return (await session.scalars(query)).one_or_none()


def drainable_by(owner: str, now: LeaseTime) -> ColumnElement[bool]:
    """A lane `owner` may drain: no lease, its own, or one that ran out."""
    return or_(
        WalletChain.lease_owner.is_(None),
        WalletChain.lease_owner == owner,
        WalletChain.lease_expires_at < now,
    )


class Claimed(NamedTuple):
    """A lane whose drain lease a process holds: its next nonce, and whether it shows
    NONCE_GAP (its requests stay queued until the tracker clears it)."""

    next_nonce: int
    gapped: bool


async def take_leases(
    session: AsyncSession,
    wallet_ids: Sequence[uuid.UUID],
    chain_id: int,
    *,
    owner: str,
    now: LeaseTime,
    until: LeaseTime,
) -> dict[WalletId, Claimed]:
    """Set each lane's lease to `owner` unless another owner's lease is still running; returns
    the lanes `owner` holds."""
    statement = (
        update(WalletChain)
        .where(
            one_of(session, WalletChain.wallet_id, wallet_ids),
            WalletChain.chain_id == chain_id,
            drainable_by(owner, now),
        )
        .values(lease_owner=owner, lease_expires_at=until)
        .execution_options(synchronize_session=False)
    )
    await session.execute(statement)
    held = select(WalletChain.wallet_id, WalletChain.next_nonce, WalletChain.paused_reason).where(
        one_of(session, WalletChain.wallet_id, wallet_ids),
        WalletChain.chain_id == chain_id,
        WalletChain.lease_owner == owner,
    )
    return {
        wallet_id: Claimed(int(nonce), reason == NONCE_GAP)
        for wallet_id, nonce, reason in (await session.execute(held)).all()
    }


async def release_leases(
    db: AsyncSession | AsyncConnection,
    wallet_ids: Sequence[uuid.UUID],
    chain_id: int,
    *,
    owner: str,
) -> None:
    """Free the drain lease of these lanes where `owner` holds it (one statement)."""
    statement = (
        update(WalletChain)
        .where(
            one_of(db, WalletChain.wallet_id, wallet_ids),
            WalletChain.chain_id == chain_id,
            WalletChain.lease_owner == owner,
        )
        .values(lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    await db.execute(statement)


async def addresses_of(
    session: AsyncSession, wallet_ids: Sequence[uuid.UUID]
) -> dict[WalletId, str]:
    """The address of each wallet that exists among `wallet_ids`."""
    query = select(Wallet.id, Wallet.address).where(one_of(session, Wallet.id, wallet_ids))
    return dict((await session.execute(query)).all())


async def get_many(
    session: AsyncSession, wallet_ids: Sequence[uuid.UUID]
) -> dict[WalletId, Wallet]:
    """Wallets by id, their lanes not loaded."""
    query = select(Wallet).where(one_of(session, Wallet.id, wallet_ids))
    return {wallet.id: wallet for wallet in (await session.scalars(query)).all()}


async def lock_lanes(
    session: AsyncSession, wallet_ids: Sequence[uuid.UUID], chain_id: int
) -> dict[WalletId, WalletChain]:
    """Lock these lanes of a chain, in wallet id order (one order everywhere: no deadlock)."""
    query = (
        select(WalletChain)
        .where(one_of(session, WalletChain.wallet_id, wallet_ids), WalletChain.chain_id == chain_id)
        .order_by(WalletChain.wallet_id)
        .with_for_update()
    )
    return {lane.wallet_id: lane for lane in (await session.scalars(query)).all()}


async def store_next_nonces(
    session: AsyncSession, chain_id: int, nonces: Mapping[WalletId, int], *, now: datetime
) -> None:
    """Each lane's nonce cursor, of one chain, in one statement (the lanes locked by the
    caller's transaction)."""
    rows = [
        {"wallet_id": wallet_id, "next_nonce": nonce, "updated_at": now}
        for wallet_id, nonce in sorted(nonces.items())
    ]
    table = cast(Table, WalletChain.__table__)
    await update_rows(session, table, rows, key="wallet_id", where=table.c.chain_id == chain_id)


async def list_page(
    session: AsyncSession,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
    ids: Collection[uuid.UUID] | None = None,
    chain_ids: Collection[int] | None = None,
) -> Sequence[Wallet]:
    """A page of wallets (among `ids`; enabled on one of `chain_ids`), lanes loaded."""
    query = select(Wallet).options(selectinload(Wallet.chains))
    if ids is not None:
        query = query.where(Wallet.id.in_(ids))
    if chain_ids is not None:
        on_them = select(WalletChain.wallet_id).where(
            WalletChain.chain_id.in_(chain_ids), WalletChain.enabled.is_(True)
        )
        query = query.where(Wallet.id.in_(on_them))
    if after is not None:
        created_at, wallet_id = after
        query = query.where(
            or_(
                Wallet.created_at > created_at,
                and_(Wallet.created_at == created_at, Wallet.id > wallet_id),
            )
        )
    query = query.order_by(Wallet.created_at, Wallet.id).limit(limit)
    return (await session.scalars(query)).all()


async def lock_sealed_not_under(
    session: AsyncSession, key_id: str, *, limit: int
) -> Sequence[Wallet]:
    """Up to `limit` wallets holding a locally sealed key not wrapped by `key_id`, locked for
    a re-wrap."""
    query = (
        select(Wallet)
        .where(
            Wallet.encrypted_key.is_not(None),
            or_(Wallet.master_key_id.is_(None), Wallet.master_key_id != key_id),
        )
        .order_by(Wallet.id)
        .limit(limit)
        .with_for_update()
    )
    return (await session.scalars(query)).all()


async def master_key_ids(session: AsyncSession) -> dict[str, int]:
    """How many wallets each master key id has wrapped."""
    query = (
        select(Wallet.master_key_id, func.count())
        .where(Wallet.master_key_id.is_not(None))
        .group_by(Wallet.master_key_id)
    )
    return {str(key_id): int(count) for key_id, count in (await session.execute(query)).all()}


async def get_lane(
    session: AsyncSession, wallet_id: uuid.UUID, chain_id: int, *, for_update: bool = False
) -> WalletChain | None:
    query = select(WalletChain).where(
        WalletChain.wallet_id == wallet_id, WalletChain.chain_id == chain_id
    )
    if for_update:
        query = query.with_for_update()
    return (await session.scalars(query)).one_or_none()


async def set_paused_reason(
    session: AsyncSession, wallet_id: uuid.UUID, chain_id: int, reason: str | None
) -> None:
    """A signer's reason (or None): never over NONCE_GAP, which the tracker alone writes."""
    await session.execute(
        update(WalletChain)
        .where(
            WalletChain.wallet_id == wallet_id,
            WalletChain.chain_id == chain_id,
            or_(WalletChain.paused_reason.is_(None), WalletChain.paused_reason != NONCE_GAP),
        )
        .values(paused_reason=reason)
    )


async def clear_paused_reason(
    session: AsyncSession, wallet_ids: Collection[uuid.UUID], reason: str
) -> None:
    """Clear `reason` from every lane of these wallets that shows it (and no other reason)."""
    await session.execute(
        update(WalletChain)
        .where(WalletChain.wallet_id.in_(wallet_ids), WalletChain.paused_reason == reason)
        .values(paused_reason=None)
    )


async def show_nonce_gaps(
    session: AsyncSession, chain_id: int, *, found: Collection[uuid.UUID]
) -> None:
    """NONCE_GAP on the `found` lanes, over a signer's reason."""
    if found:
        await session.execute(
            update(WalletChain)
            .where(WalletChain.chain_id == chain_id, WalletChain.wallet_id.in_(found))
            .values(paused_reason=NONCE_GAP)
        )


async def clear_nonce_gaps(
    session: AsyncSession, chain_id: int, wallet_ids: Collection[uuid.UUID], *, to: str | None
) -> None:
    """NONCE_GAP off these lanes (those still showing it), `to` in its place."""
    if wallet_ids:
        await session.execute(
            update(WalletChain)
            .where(
                WalletChain.chain_id == chain_id,
                WalletChain.wallet_id.in_(wallet_ids),
                WalletChain.paused_reason == NONCE_GAP,
            )
            .values(paused_reason=to)
        )


async def lanes_showing(session: AsyncSession, chain_id: int, reason: str) -> list[WalletId]:
    """The wallets whose lane on the chain shows this paused_reason."""
    query = select(WalletChain.wallet_id).where(
        WalletChain.chain_id == chain_id, WalletChain.paused_reason == reason
    )
    return [WalletId(w) for w in (await session.scalars(query)).all()]
