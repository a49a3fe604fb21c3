"""Use cases of the chain registry: list, get, add, update, seed."""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from chainflow.domain.chains import repository
from chainflow.domain.chains.errors import ChainExists, ChainHasNoRpc, ChainNotFound
from chainflow.domain.chains.models import Chain
from chainflow.domain.chains.probe import ChainIdProbe, verify_rpc_urls
from chainflow.domain.chains.schemas import ChainCreate, ChainSeed, ChainUpdate
from chainflow.infra.db.lease_clock import lease_now, lease_times

_SCALARS = (
    "name",
    "native_symbol",
    "eip1559",
    "confirmations",
    "block_time_s",
    "max_fee_per_gas_cap",
    "max_priority_fee_per_gas_cap",
    "enabled",
)


async def list_chains(session: AsyncSession) -> Sequence[Chain]:
    """Return every chain, by chain id."""
    return await repository.list_all(session)


async def get_chain(
    session: AsyncSession, chain_id: int, *, for_update: bool = False, endpoints: bool = True
) -> Chain:
    """Return one chain (without `endpoints`, its `rpc_endpoints` are not loaded).

    Raises: ChainNotFound."""
    chain = await repository.get(session, chain_id, for_update=for_update, endpoints=endpoints)
    if chain is None:
        raise ChainNotFound(f"chain {chain_id} is not in the registry")
    return chain


async def get_chain_at_lease_clock(session: AsyncSession, chain_id: int) -> tuple[Chain, datetime]:
    """The chain (without `rpc_endpoints`) and now on the lease clock (lease_clock.lease_now),
    read by one statement: its tracker lease is judged on the clock it was written on.

    Raises: ChainNotFound."""
    now = lease_now(session)
    if isinstance(now, datetime):  # SQLite: the process's clock
        return await get_chain(session, chain_id, endpoints=False), now
    found = await repository.get_with(session, chain_id, now)
    if found is None:
        raise ChainNotFound(f"chain {chain_id} is not in the registry")
    return found


async def create_chain(session: AsyncSession, data: ChainCreate, *, probe: ChainIdProbe) -> Chain:
    """Add a chain after checking that every RPC URL serves it."""
    if await repository.get(session, data.chain_id) is not None:
        raise ChainExists(f"chain {data.chain_id} is already in the registry")
    await verify_rpc_urls(probe, data.rpc_urls, chain_id=data.chain_id)
    chain = Chain(chain_id=data.chain_id, rpc_endpoints=[])
    for field in _SCALARS:
        setattr(chain, field, getattr(data, field))
    repository.replace_endpoints(chain, data.rpc_urls)
    session.add(chain)
    await session.flush()
    return chain


async def update_chain(
    session: AsyncSession, chain_id: int, data: ChainUpdate, *, probe: ChainIdProbe
) -> Chain:
    """Change a chain; new RPC URLs, or enabling it, re-verify every URL first."""
    chain = await get_chain(session, chain_id, for_update=True)
    changes = data.model_dump(exclude_unset=True)
    urls: list[str] = changes.pop("rpc_urls", None) or chain.rpc_urls
    enabling = changes.get("enabled") is True
    if (enabling or chain.enabled) and not urls:
        raise ChainHasNoRpc(f"chain {chain_id} needs rpc_urls before it can be enabled")
    if "rpc_urls" in data.model_fields_set or (enabling and not chain.enabled):
        await verify_rpc_urls(probe, urls, chain_id=chain_id)
        repository.replace_endpoints(chain, urls)
    for field, value in changes.items():
        setattr(chain, field, value)
    await session.flush()
    return chain


async def seed_chains(session: AsyncSession, seeds: Sequence[ChainSeed]) -> int:
    """Insert the seed chains that are missing; never overwrite. Returns how many were added."""
    present = await repository.existing_ids(session)
    added = 0
    for seed in seeds:
        if seed.chain_id in present:
            continue
        chain = Chain(chain_id=seed.chain_id, rpc_endpoints=[])
        for field in _SCALARS:
            setattr(chain, field, getattr(seed, field))
        repository.replace_endpoints(chain, seed.rpc_urls)
        session.add(chain)
        added += 1
    await session.flush()
    return added


async def take_tracker_lease(
    db: AsyncSession | AsyncConnection, chain_id: int, *, owner: str, ttl_s: float
) -> bool:
    """Take or renew the chain's tracker lease for `owner`; False while another holds it.
    One statement: `db` may be a connection in autocommit (`single_statements`).

    On PostgreSQL a row locked by a tracker's record, bump or cancel transaction (its
    `holds_tracker_lease` share lock) is skipped, not waited for: a process stopped inside
    such a transaction (SIGSTOP, a paused VM) keeps its lock, and waiting for it held every
    other worker's rounds of the chain (review). The take is tried again next round."""
    now, until = lease_times(db, ttl_s)  # the database server's clock (PostgreSQL)
    free = Chain.chain_id == chain_id
    if not isinstance(now, datetime):  # PostgreSQL
        unlocked = (
            select(Chain.chain_id)
            .where(Chain.chain_id == chain_id)
            .with_for_update(key_share=True, skip_locked=True)  # FOR NO KEY UPDATE
        )
        free = Chain.chain_id.in_(unlocked)
    statement = (
        update(Chain)
        .where(
            free,
            or_(
                Chain.tracker_owner.is_(None),
                Chain.tracker_owner == owner,
                Chain.tracker_lease_until < now,
            ),
        )
        .values(tracker_owner=owner, tracker_lease_until=until)
        .execution_options(synchronize_session=False)
    )
    result = await db.execute(statement)
    return bool(getattr(result, "rowcount", 0))


async def keep_tracker_lease(
    db: AsyncSession | AsyncConnection, chain_id: int, *, owner: str, ttl_s: float
) -> bool:
    """Renew the chain's tracker lease if `owner` still holds it, even run out: tracker
    leases are never released, so `owner` still on the row means nobody else took it
    meanwhile (a pass slower than its lease goes on). One statement, as take_tracker_lease."""
    _, until = lease_times(db, ttl_s)
    statement = (
        update(Chain)
        .where(Chain.chain_id == chain_id, Chain.tracker_owner == owner)
        .values(tracker_lease_until=until)
        .execution_options(synchronize_session=False)
    )
    result = await db.execute(statement)
    return bool(getattr(result, "rowcount", 0))


async def holds_tracker_lease(session: AsyncSession, chain_id: int, *, owner: str) -> bool:
    """Whether `owner` holds the chain's running tracker lease, the row share-locked till
    the end of `session`'s transaction: nobody takes the lease before what the transaction
    writes is committed (a pass that stalled after checking its lease signed a bump beside
    the lease's new holder). SQLite has one process: always True."""
    now = lease_now(session)
    if isinstance(now, datetime):
        return True
    query = (
        select(Chain.chain_id)
        .where(
            Chain.chain_id == chain_id,
            Chain.tracker_owner == owner,
            Chain.tracker_lease_until > now,
        )
        .with_for_update(read=True)
    )
    return (await session.scalar(query)) is not None
