"""The plan of a round's read of the lanes with queued work (issue 17, docs/performance.md
item 45): it runs every round of every worker, over every queued request of the chain."""

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.clock import utcnow
from chainflow.domain.master_key import foreign_key_ids
from chainflow.domain.transactions import repository
from chainflow.domain.wallets import service
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.local import generate_private_key
from tests.support.chains import ANVIL_CHAIN_ID, add_anvil_chain
from tests.support.plans import session_plan, statements_sent

CHAIN_ID = ANVIL_CHAIN_ID
WALLETS = 8


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
class TestLanesWithQueuedPlan:
    @pytest.mark.parametrize("generic", [False, True])
    async def test_counts_before_joining_and_reads_only_refused_attempts(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        master_key: MasterKey,
        generic: bool,
    ) -> None:
        """The queued requests are grouped per wallet before the wallet and lane rows are
        joined (joined first, each queued row probed both primary keys, every round), and the
        refused-for-funds check reads only ix_tx_attempts_refused, which holds nothing but
        refused attempts (before: the attempts of every signed request of every lane)."""
        await _lanes(sessionmaker, master_key, queued=300, signed=60)

        async def read(session: AsyncSession) -> object:
            holders = repository.LaneHolders()
            return await repository.lanes_with_queued(
                session, CHAIN_ID, owner="w1", now=utcnow(), holders=holders
            )

        [(statement, parameters)] = [
            (q, p) for q, p in await statements_sent(sessionmaker, read) if "lease_owner" in q
        ]
        plan = await session_plan(sessionmaker, statement, parameters, generic=generic)

        nodes = _nodes(plan)
        attempts = [n for n in nodes if n.get("Relation Name") == "tx_attempts"]
        assert attempts, plan
        assert {n.get("Index Name") for n in attempts} == {"ix_tx_attempts_refused"}, plan
        [counted] = [
            n
            for n in nodes
            if n["Node Type"] == "Aggregate"
            and any(c.get("Alias") == "transactions" for c in _nodes(n))
        ]
        joined = {c.get("Relation Name") for c in _nodes(counted)}
        assert not joined & {"wallets", "wallet_chains"}, counted


async def _lanes(
    sessionmaker: async_sessionmaker[AsyncSession], master: MasterKey, *, queued: int, signed: int
) -> None:
    """WALLETS lanes, each with `queued` queued requests and `signed` signed ones (one
    attempt each, none refused), analysed."""
    async with unit_of_work(sessionmaker) as session:
        await add_anvil_chain(session, "http://127.0.0.1:1")  # never called
        for _ in range(WALLETS):
            wallet = await service.import_wallet(
                session,
                generate_private_key(),
                master=master,
                chain_ids=[CHAIN_ID],
                sealed_rows=foreign_key_ids,
            )
            values = {"wallet": wallet.id, "address": wallet.address, "chain": CHAIN_ID}
            await session.execute(_REQUESTS, {**values, "status": "queued", "n": queued})
            await session.execute(_REQUESTS, {**values, "status": "signed", "n": signed})
        await session.execute(_ATTEMPTS)
    async with sessionmaker() as session:
        await session.execute(text("ANALYZE transactions, tx_attempts, wallets, wallet_chains"))
        await session.commit()


_REQUESTS = text(
    "INSERT INTO transactions (id, kind, chain_id, wallet_id, from_address, to_address,"
    " value_wei, data, status, nonce, cancel_requested, confirmations, created_at, updated_at)"
    " SELECT gen_random_uuid(), 'request', :chain, :wallet, :address, :address, 1, '',"
    " CAST(:status AS VARCHAR), CASE WHEN CAST(:status AS VARCHAR) = 'signed' THEN n END,"
    " false, 0, now(), now()"
    " FROM generate_series(1, :n) AS n"
)
_ATTEMPTS = text(
    "INSERT INTO tx_attempts (id, tx_id, kind, status, nonce, gas_limit, raw, hash,"
    " broadcast_count, created_at)"
    " SELECT gen_random_uuid(), id, 'original', 'signed', nonce, 21000, '',"
    " '0x' || md5(id::text) || md5(nonce::text), 0, now()"
    " FROM transactions WHERE status = 'signed'"
)


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node]
    for child in node.get("Plans", []):
        found.extend(_nodes(child))
    return found
