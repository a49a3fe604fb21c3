"""The stuck-after-N-blocks rule on a chain that mines one transfer per block.

A drain sends a wallet's batch at once, and every attempt of it counts its blocks from the same
head; on a chain whose blocks hold one of the wallet's transfers each (anvil with a block gas
limit of 21,000 here; a sequencer with a block per transaction, a congested chain), the later
nonces are next in line only one block after another. Their N blocks count from then: a batch
mined steadily is never bumped, and a request that is next in line and left out of N blocks
still is. A window whose fee caps cannot pay the base fee counts from its send alone: no block
can hold any of it, so none waits for the one before it to be mined.
"""

import dataclasses
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.types import TxId
from chainflow.domain.transactions.models import Transaction
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets.models import Wallet
from chainflow.infra.anvil import run_anvil
from chainflow.infra.signing.keystore import MasterKey
from tests.support.chaos import (
    GWEI,
    assert_lane_settled,
    assert_valid_replacements,
    describe,
    head,
    mine_with_base_fee,
    run_rounds_until,
)
from tests.support.engine import TEST_CONFIG, EngineHarness, has_status, open_engine_harness

TRANSFER_GAS = 21_000
# The block rule alone: the time rule (stuck_after_s) out of reach.
BLOCKS_ONLY = dataclasses.replace(TEST_CONFIG, stuck_after_s=600.0)
_COMPETITOR = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"  # anvil's unlocked account 9


@pytest.fixture
async def narrow_harness(
    sessionmaker: async_sessionmaker[AsyncSession], master_key: MasterKey
) -> AsyncIterator[EngineHarness]:
    """An anvil of its own whose blocks hold one transfer each, mined only by `evm_mine`."""
    extra_args = ("--gas-limit", str(TRANSFER_GAS), "--no-mining")
    async with (
        run_anvil(extra_args=extra_args) as url,
        open_engine_harness(sessionmaker, url, master_key, config=BLOCKS_ONLY) as value,
    ):
        yield value


async def sent_transfers(
    harness: EngineHarness, wallet: Wallet, count: int
) -> tuple[list[TxId], list[Transaction]]:
    """`count` transfers of `wallet`, each in a block of its own, once all are sent."""
    ids = [
        await harness.submit(wallet, value=str(i + 1), gas_limit=TRANSFER_GAS) for i in range(count)
    ]
    return ids, await harness.run_until(ids, has_status(TxStatus.SUBMITTED))


def all_confirmed(rows: list[Transaction]) -> bool:
    return all(tx.status is TxStatus.CONFIRMED for tx in rows)


class TestOneTransferPerBlock:
    async def test_a_batch_mined_one_per_block_is_never_bumped(
        self, narrow_harness: EngineHarness
    ) -> None:
        harness, rpc = narrow_harness, narrow_harness.rpc
        wallet = await harness.wallet()
        ids, sent = await sent_transfers(harness, wallet, 6)
        assert await harness.chain_nonce(wallet) == 0
        started = await head(rpc)

        async def mine_one_block(rows: list[Transaction]) -> None:
            assert [len(tx.attempts) for tx in rows] == [1] * len(rows), [
                describe(tx) for tx in rows
            ]
            await rpc.call("evm_mine")

        rows = await run_rounds_until(harness, ids, all_confirmed, each_round=mine_one_block)
        assert [len(tx.attempts) for tx in rows] == [1] * len(rows), [describe(tx) for tx in rows]
        assert [tx.final_hash for tx in rows] == [tx.attempts[0].hash for tx in sent]
        blocks = [tx.block_number for tx in rows]
        assert blocks == list(range(started + 1, started + 1 + len(ids)))  # one per block
        await assert_lane_settled(harness, wallet)

    async def test_next_in_line_left_out_of_n_blocks_is_bumped(
        self, narrow_harness: EngineHarness
    ) -> None:
        harness, rpc = narrow_harness, narrow_harness.rpc
        wallet = await harness.wallet()
        first, second = [
            await harness.submit(wallet, value=str(i + 1), gas_limit=TRANSFER_GAS) for i in range(2)
        ]
        await harness.run_until([first, second], has_status(TxStatus.SUBMITTED))
        await rpc.call("evm_mine")  # the first request's block: the second is next in line
        (mined,) = await harness.run_until([first], has_status(TxStatus.CONFIRMED))
        assert mined.block_number is not None
        in_line_from = mined.block_number

        async def crowd_out(rows: list[Transaction]) -> None:
            if len(rows[0].attempts) > 1:  # bumped in this round, at the head it read
                assert await head(rpc) - in_line_from >= BLOCKS_ONLY.stuck_after_blocks
                return
            # A higher tip takes the block's one slot: the chain advances, our request waits.
            call = {
                "from": _COMPETITOR,
                "to": _COMPETITOR,
                "gas": hex(TRANSFER_GAS),
                "maxFeePerGas": hex(200 * GWEI),
                "maxPriorityFeePerGas": hex(100 * GWEI),
            }
            await rpc.call("eth_sendTransaction", [call])
            await rpc.call("evm_mine")

        def bumped(rows: list[Transaction]) -> bool:
            return len(rows[0].attempts) > 1

        (tx,) = await run_rounds_until(harness, [second], bumped, each_round=crowd_out)
        assert tx.status is TxStatus.SUBMITTED
        assert await harness.chain_nonce(wallet) == 1

        async def mine_one_block(_: list[Transaction]) -> None:
            await rpc.call("evm_mine")

        (tx,) = await run_rounds_until(harness, [second], all_confirmed, each_round=mine_one_block)
        assert_valid_replacements(tx.attempts, cap_wei=None)
        await assert_lane_settled(harness, wallet)


class TestWindowBelowTheBaseFee:
    async def test_every_nonce_is_bumped_n_blocks_after_its_send(
        self, narrow_harness: EngineHarness
    ) -> None:
        harness, rpc = narrow_harness, narrow_harness.rpc
        wallet = await harness.wallet()
        ids, sent = await sent_transfers(harness, wallet, 3)
        fee_cap = max(a.max_fee_per_gas_wei or 0 for tx in sent for a in tx.attempts)
        for _ in range(BLOCKS_ONLY.stuck_after_blocks):
            # Far above the window's fee caps (empty blocks lower it by 12.5 % each): none of
            # it can be mined, and anvil drops it from its pool.
            await mine_with_base_fee(rpc, 100 * fee_cap)
        assert await harness.chain_nonce(wallet) == 0

        def all_bumped(rows: list[Transaction]) -> bool:
            return all(len(tx.attempts) > 1 for tx in rows)

        # No block is mined meanwhile: counted from when each came next in line (the block that
        # mined the nonce before it), only the lowest was bumped, the rest left to the time
        # rule (600 s here).
        rows = await run_rounds_until(harness, ids, all_bumped, timeout_s=15)
        assert [len(tx.attempts) for tx in rows] == [2] * len(rows), [describe(tx) for tx in rows]

        async def mine_one_block(_: list[Transaction]) -> None:
            await mine_with_base_fee(rpc, fee_cap)  # the spike passes

        rows = await run_rounds_until(harness, ids, all_confirmed, each_round=mine_one_block)
        for tx in rows:
            assert_valid_replacements(tx.attempts, cap_wei=None)
        await assert_lane_settled(harness, wallet)
