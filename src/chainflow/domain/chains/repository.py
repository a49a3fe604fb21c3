"""All SQL of the chain registry."""

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from chainflow.domain.chains.models import Chain, RpcEndpoint


async def get(
    session: AsyncSession, chain_id: int, *, for_update: bool = False, endpoints: bool = True
) -> Chain | None:
    query = select(Chain).where(Chain.chain_id == chain_id)
    if endpoints:
        query = query.options(selectinload(Chain.rpc_endpoints))
    if for_update:
        query = query.with_for_update()
    return (await session.scalars(query)).one_or_none()


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
