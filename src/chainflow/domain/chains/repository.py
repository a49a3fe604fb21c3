"""All SQL of the chain registry."""

from collections.abc import Sequence
from typing import TypeVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from chainflow.domain.chains.models import Chain, RpcEndpoint

T = TypeVar("T")


async def get(
    session: AsyncSession, chain_id: int, *, for_update: bool = False, endpoints: bool = True
) -> Chain | None:
    query = select(Chain).where(Chain.chain_id == chain_id)
    if endpoints:
        query = query.options(selectinload(Chain.rpc_endpoints))
    if for_update:
        query = query.with_for_update()
    return (await session.scalars(query)).one_or_none()


async def get_with(
    session: AsyncSession, chain_id: int, value: ColumnElement[T]
) -> tuple[Chain, T] | None:
    """The chain (without `rpc_endpoints`) and `value`, read by the same statement."""
    query = select(Chain, value).where(Chain.chain_id == chain_id)
    row = (await session.execute(query)).one_or_none()
    return None if row is None else (row[0], row[1])


async def list_all(session: AsyncSession) -> Sequence[Chain]:
    query = select(Chain).options(selectinload(Chain.rpc_endpoints)).order_by(Chain.chain_id)
    return (await session.scalars(query)).all()


async def existing_ids(session: AsyncSession) -> set[int]:
    return set((await session.scalars(select(Chain.chain_id))).all())


def replace_endpoints(chain: Chain, urls: Sequence[str]) -> None:
    """Replace a loaded chain's endpoints, keeping the given order.

    Rows of URLs that stay are reused: deleting and re-inserting the same URL in one flush
    would hit the (chain_id, url) unique constraint, as inserts are flushed before deletes.
    """
    existing = {endpoint.url: endpoint for endpoint in chain.rpc_endpoints}
    kept: list[RpcEndpoint] = []
    for position, url in enumerate(urls):
        endpoint = existing.get(url) or RpcEndpoint(url=url, weight=1)
        endpoint.position = position
        kept.append(endpoint)
    chain.rpc_endpoints = kept
