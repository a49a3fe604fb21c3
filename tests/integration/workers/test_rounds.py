"""Engine rounds: a drain that fails every round is logged on its 1st, 10th and every 100th
failure in a row, not on every round (issue 14: no log line repeats in a hot loop)."""

import dataclasses

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.domain.transactions.attempts import Signers
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets.models import Wallet
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.signer import Signer
from chainflow.workers.engine import Engine
from chainflow.workers.main import run_round
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.engine import open_engine_harness


class _FakeFailingSigners(Signers):
    """A fault in the signing step that no handler expects (a bug): the drain fails."""

    async def of(self, wallet: Wallet) -> Signer:
        raise RuntimeError(f"no signer for wallet {wallet.id}")


async def test_a_drain_failing_every_round_is_logged_on_some_failures_only(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> None:
    async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:
        wallet = await harness.wallet()
        tx_id = await harness.submit(wallet, value="1")
        # Signers that fail as no handler expects: every drain fails when it signs. (A master
        # key that cannot unwrap the wallet's key no longer does: only that lane waits, with
        # paused_reason key_unreadable, test_key_unreadable.py.)
        engine = harness.engine
        bad_keys = _FakeFailingSigners(MasterKey.generate())
        broken = Engine(engine.ports, dataclasses.replace(engine.state, signers=bad_keys))
        with structlog.testing.capture_logs() as logs:
            for _ in range(25):
                await run_round(broken, ANVIL_CHAIN_ID)
        failed = [entry for entry in logs if entry["event"] == "lanes.drain_failed"]
        assert [entry["failures"] for entry in failed] == [1, 10]
        assert (await harness.get(tx_id)).status is TxStatus.QUEUED
        (tx,) = await harness.run_until_final([tx_id])  # the right key: the lane drains
        assert tx.status is TxStatus.CONFIRMED
        assert harness.engine.state.drain_failures == {}  # and the count starts again
