"""A drain's database statements do not grow with its lanes (issue 17): each step reads or
writes all of its lanes in one statement (on PostgreSQL an executemany counts a statement per
row, as the server runs it), so a round's fixed cost is paid once, not per lane; and their SQL
texts do not depend on how many requests it signs (one prepared statement each)."""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine.interfaces import ExecuteStyle
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.types import TxId
from chainflow.domain.chains import service as chains
from chainflow.domain.transactions.config import ChainConfig
from chainflow.domain.transactions.service import cancel
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets.models import NONCE_GAP, Wallet, WalletChain
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


# SQLite writes a round with executemany, one text per statement already.
@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
async def test_a_drain_signs_with_the_same_sql_texts_whatever_its_size(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> None:
    async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:
        three: list[str] = []
        await _drain_counting(harness, lanes=1, each=3, texts=three)
        four: list[str] = []
        await _drain_counting(harness, lanes=1, each=4, texts=four)
    # A list of 3 or 4 ids is one array parameter on PostgreSQL (infra/db/params.one_of); a
    # multi-row INSERT had a VALUES group per row: a new text, a new prepared statement.
    assert set(three) == set(four), set(three) ^ set(four)


async def test_a_request_cancelled_after_the_plan_is_not_signed_and_leaves_no_gap(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> None:
    """The signing step signs the plan's rows of the requests still queued under its lock."""
    async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:

        async def cancel_middle(_wallet: Wallet, tx_ids: list[TxId]) -> None:
            async with unit_of_work(harness.sessionmaker) as session:
                await cancel(session, tx_ids[1], api_key_id=None, is_admin=True)

        _, tx_ids, signed = await _drain_after_plan(harness, 3, cancel_middle)
        assert signed == 2
        await harness.run_until([tx_ids[0], tx_ids[2]], has_status(TxStatus.CONFIRMED))
        first, middle, last = [await harness.get(tx_id) for tx_id in tx_ids]
        assert middle.status is TxStatus.CANCELLED
        assert middle.nonce is None
        assert last.nonce == first.nonce + 1  # type: ignore[operator]


async def test_a_lane_shown_nonce_gap_after_the_plan_signs_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> None:
    """The signing step reads `nonce_gap` again under the lane lock: a tracker that shows it
    between the plan and the signature leaves the lane's requests queued, no nonce taken."""
    async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:

        async def show_gap(wallet: Wallet, _tx_ids: list[TxId]) -> None:
            async with unit_of_work(harness.sessionmaker) as session:
                lane = await session.get(WalletChain, (wallet.id, ANVIL_CHAIN_ID))
                assert lane is not None
                lane.paused_reason = NONCE_GAP

        wallet, tx_ids, signed = await _drain_after_plan(harness, 2, show_gap)
        assert signed == 0
        rows = [await harness.get(tx_id) for tx_id in tx_ids]
        assert [(tx.status, tx.nonce) for tx in rows] == [(TxStatus.QUEUED, None)] * 2
        async with unit_of_work(harness.sessionmaker) as session:
            lane = await session.get(WalletChain, (wallet.id, ANVIL_CHAIN_ID))
            assert lane is not None
            assert (lane.next_nonce, lane.paused_reason) == (0, NONCE_GAP)
        assert await harness.chain_nonce(wallet, "pending") == 0


async def _drain_after_plan(
    harness: EngineHarness,
    queued: int,
    action: Callable[[Wallet, list[TxId]], Awaitable[None]],
) -> tuple[Wallet, list[TxId], int]:
    """Drain a new lane with `queued` requests, running `action` once the plan has read it:
    at its gas estimates. Returns the wallet, the requests and how many the drain signed."""
    wallet = await harness.wallet()
    tx_ids = [await harness.submit(wallet, value="1") for _ in range(queued)]
    chain = await _chain(harness)
    harness.engine.state.addresses[wallet.id] = wallet.address
    rpc = harness.engine.rpc(ANVIL_CHAIN_ID)
    batch = rpc.batch
    done: list[bool] = []

    async def act_then_batch(calls: Any) -> Any:
        if not done and calls and calls[0][0] == "eth_estimateGas":
            done.append(True)
            await action(wallet, tx_ids)
        return await batch(calls)

    rpc.batch = act_then_batch  # type: ignore[method-assign]
    try:
        signed = await drain_lanes(harness.engine, chain, [wallet.id])
    finally:
        del rpc.batch
    assert done
    return wallet, tx_ids, signed


async def _chain(harness: EngineHarness) -> ChainConfig:
    async with unit_of_work(harness.sessionmaker) as session:
        return ChainConfig.of(await chains.get_chain(session, ANVIL_CHAIN_ID, endpoints=False))


async def _drain_counting(
    harness: EngineHarness, *, lanes: int, each: int = 2, texts: list[str] | None = None
) -> int:
    """Statements of one drain of `lanes` new lanes with `each` queued requests each, all
    signed and sent by it (their SQL texts appended to `texts`)."""
    wallets = [await harness.wallet() for _ in range(lanes)]
    tx_ids = [await harness.submit(w, value="1") for w in wallets for _ in range(each)]
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
        if texts is not None:
            texts.append(sql)

    engine = harness.sessionmaker.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        signed = await drain_lanes(harness.engine, chain, [w.id for w in wallets])
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert signed == each * lanes
    await harness.run_until(tx_ids, has_status(TxStatus.CONFIRMED))
    return len(statements)
