"""A drain's database statements do not grow with its lanes (issue 17): each step reads or
writes all of its lanes in one statement (on PostgreSQL an executemany counts a statement per
row, as the server runs it), so a round's fixed cost is paid once, not per lane."""

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine.interfaces import ExecuteStyle
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.domain.chains import service as chains
from chainflow.domain.transactions.config import ChainConfig
from chainflow.domain.transactions.state import TxStatus
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from chainflow.workers.drain import drain_lanes
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.engine import EngineHarness, has_status, open_engine_harness


async def test_a_drain_of_four_lanes_runs_the_statements_of_one(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> None:
    async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:
        one = await _drain_counting(harness, lanes=1)
        four = await _drain_counting(harness, lanes=4)
    assert four == one, (one, four)


async def _drain_counting(harness: EngineHarness, *, lanes: int) -> int:
    """Statements of one drain of `lanes` new lanes with two queued requests each, all
    signed and sent by it."""
    wallets = [await harness.wallet() for _ in range(lanes)]
    tx_ids = [await harness.submit(w, value="1") for w in wallets for _ in range(2)]
    async with unit_of_work(harness.sessionmaker) as session:
        chain = ChainConfig.of(await chains.get_chain(session, ANVIL_CHAIN_ID, endpoints=False))
    # The wallets' addresses are read once per process: not part of a round's cost.
    harness.engine.state.addresses.update({w.id: w.address for w in wallets})
    statements: list[str] = []

    def count(conn: Any, _cursor: Any, sql: str, params: Any, ctx: Any, _many: bool) -> None:
        # On PostgreSQL an executemany is one statement per row on the server (asyncpg,
        # pg_stat_statements); SQLite keeps them for its bulk writes (infra/db/bulk.py).
        many = ctx.execute_style is ExecuteStyle.EXECUTEMANY
        rows = len(params) if many and conn.dialect.name == "postgresql" else 1
        statements.extend([sql] * rows)

    engine = harness.sessionmaker.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        signed = await drain_lanes(harness.engine, chain, [w.id for w in wallets])
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert signed == 2 * lanes
    await harness.run_until(tx_ids, has_status(TxStatus.CONFIRMED))
    return len(statements)
