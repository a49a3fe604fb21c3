"""The engine's invariants, read from the database and the chain after a test has run."""

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from chainflow.domain.transactions.models import AttemptStatus, Transaction
from chainflow.domain.transactions.state import TxStatus, is_terminal
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.rpc.client import RpcClient


async def load_requests(sessionmaker: async_sessionmaker[AsyncSession]) -> Sequence[Transaction]:
    async with unit_of_work(sessionmaker) as session:
        query = select(Transaction).options(
            selectinload(Transaction.attempts), selectinload(Transaction.events)
        )
        return (await session.scalars(query)).all()


async def violations(sessionmaker: async_sessionmaker[AsyncSession], rpc: RpcClient) -> list[str]:
    """Every broken invariant, as one line each; empty when all hold:

    - every request is terminal;
    - each confirmed request has exactly one mined attempt, whose hash is on chain;
    - per wallet, the on-chain nonce count equals the number of nonces our requests used, and
      those nonces are 0..n-1 with none used twice (no gap, nothing executed twice).
    """
    rows = await load_requests(sessionmaker)
    found: list[str] = []
    by_wallet: dict[str, list[int]] = defaultdict(list)
    for tx in rows:
        if not is_terminal(tx.status):
            found.append(f"{tx.id} is still {tx.status}")
        if tx.status is TxStatus.CONFIRMED:
            mined = [a for a in tx.attempts if a.status is AttemptStatus.MINED]
            if len(mined) != 1 or mined[0].hash != tx.final_hash:
                found.append(f"{tx.id} confirmed with {len(mined)} mined attempts")
                continue
            receipt = await rpc.call("eth_getTransactionReceipt", [tx.final_hash])
            if not receipt:
                found.append(f"{tx.id} confirmed but {tx.final_hash} has no receipt")
        if tx.nonce is not None and tx.status in (TxStatus.CONFIRMED, TxStatus.REVERTED):
            by_wallet[tx.from_address].append(tx.nonce)
    for address, nonces in by_wallet.items():
        count = int(await rpc.call("eth_getTransactionCount", [address, "latest"]), 16)
        if sorted(nonces) != list(range(count)):
            found.append(f"{address}: nonces of executed requests {sorted(nonces)} vs {count}")
    return found
