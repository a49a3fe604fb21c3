"""The tracker and another process's drain (issue 17, batch path): a request that drain
signed and is sending is not sent again from the tracker's process while the drain's lane
lease holds; once that lease runs out (the drain died) it is sent as after any crash
(docs/performance.md item 53)."""

from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.clock import utcnow
from chainflow.core.types import TxId
from chainflow.domain.transactions.models import TxAttempt
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets.models import Wallet, WalletChain
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from chainflow.workers.track import track_chain
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.chaos import chain_config, sign_without_sending
from tests.support.engine import EngineHarness, open_engine_harness

OTHER = "other-worker"


async def _lease_to(harness: EngineHarness, wallet: Wallet, owner: str, *, for_s: float) -> None:
    """The lane's drain lease as another process's drain leaves it, running `for_s` more."""
    async with unit_of_work(harness.sessionmaker) as session:
        await session.execute(
            update(WalletChain)
            .where(WalletChain.wallet_id == wallet.id, WalletChain.chain_id == ANVIL_CHAIN_ID)
            .values(lease_owner=owner, lease_expires_at=utcnow() + timedelta(seconds=for_s))
        )


async def _signed_ago(harness: EngineHarness, tx_id: TxId, seconds: float) -> None:
    async with unit_of_work(harness.sessionmaker) as session:
        await session.execute(
            update(TxAttempt)
            .where(TxAttempt.tx_id == tx_id)
            .values(created_at=utcnow() - timedelta(seconds=seconds))
        )


async def _sent_state(harness: EngineHarness, tx_id: TxId, raw_hash: str) -> tuple[object, ...]:
    tx = await harness.get(tx_id)
    on_node = await harness.rpc.call("eth_getTransactionByHash", [raw_hash])
    return tx.status, tx.attempts[0].broadcast_count, on_node is not None


class TestAnotherProcessSending:
    async def test_its_unsent_request_is_left_while_its_lane_lease_holds(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        anvil_url: str,
        master_key: MasterKey,
    ) -> None:
        async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:
            wallet = await harness.wallet()
            tx_id = await harness.submit(wallet, value="1")
            (sent,) = await sign_without_sending(harness, wallet)
            await _lease_to(harness, wallet, OTHER, for_s=30)
            chain = await chain_config(harness)
            assert await track_chain(harness.engine, chain) == 1  # looked at, left alone
            assert await _sent_state(harness, tx_id, sent.hash) == (TxStatus.SIGNED, 0, False)
            await _lease_to(harness, wallet, OTHER, for_s=-1)  # that drain died: its lease ran out
            await track_chain(harness.engine, chain)
            assert await _sent_state(harness, tx_id, sent.hash) == (TxStatus.SUBMITTED, 1, True)

    async def test_its_request_signed_longer_ago_than_a_lease_is_sent(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        anvil_url: str,
        master_key: MasterKey,
    ) -> None:
        # A live process that keeps the lane but never sent this one: not left for ever.
        async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:
            wallet = await harness.wallet()
            tx_id = await harness.submit(wallet, value="1")
            (sent,) = await sign_without_sending(harness, wallet)
            await _lease_to(harness, wallet, OTHER, for_s=30)
            await _signed_ago(harness, tx_id, harness.engine.config.lane_lease_s + 1)
            await track_chain(harness.engine, await chain_config(harness))
            assert await _sent_state(harness, tx_id, sent.hash) == (TxStatus.SUBMITTED, 1, True)

    async def test_its_lease_does_not_hold_back_this_process_own_unsent_request(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        anvil_url: str,
        master_key: MasterKey,
    ) -> None:
        # The lease is this process's own (its drain crashed mid-step): sent at once.
        async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:
            wallet = await harness.wallet()
            tx_id = await harness.submit(wallet, value="1")
            (sent,) = await sign_without_sending(harness, wallet)
            await _lease_to(harness, wallet, harness.engine.ports.owner, for_s=30)
            await track_chain(harness.engine, await chain_config(harness))
            assert await _sent_state(harness, tx_id, sent.hash) == (TxStatus.SUBMITTED, 1, True)
