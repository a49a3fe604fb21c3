"""Leases run on the database server's clock (PostgreSQL), not on the host clock of the
process that takes them. Found with a distributed deployment: a worker whose host clock ran
30 s ahead wrote lane and tracker leases that, for the other workers, ran 35 s; once it was
killed, every wallet's new requests stayed queued for 33 s (the README promises a killed
worker's lanes move within 5 s) and the chain was not tracked meanwhile."""

import asyncio
from datetime import datetime, timedelta, tzinfo
from functools import partial

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from chainflow.core import clock
from chainflow.domain.chains import service as chains
from chainflow.domain.chains.models import Chain
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets import service as wallets
from chainflow.domain.wallets.models import WalletChain
from chainflow.infra.db.uow import engine_of, single_statements, unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.engine import has_status, open_engine_harness
from tests.support.polling import eventually

pytestmark = pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
_TTL_S = 0.2
# A lease that ran out a second ago on the server's clock.
_A_SECOND_AGO = func.statement_timestamp() - text("interval '1 second'")


class _Behind(datetime):
    """The wall clock of a host that runs a minute behind the database server."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> "_Behind":
        real = datetime.now(tz) - timedelta(seconds=60)
        return cls.fromtimestamp(real.timestamp(), tz)


class _Ahead(datetime):
    """The wall clock of a host that runs a minute ahead."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> "_Ahead":
        real = datetime.now(tz) + timedelta(seconds=60)
        return cls.fromtimestamp(real.timestamp(), tz)


async def test_a_tracker_lease_taken_on_a_clock_ahead_runs_out_on_time(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> None:
    async with open_engine_harness(sessionmaker, anvil_url, master_key):
        take = partial(_take, engine_of(sessionmaker))

        with pytest.MonkeyPatch.context() as patched:
            patched.setattr(clock, "datetime", _Ahead)
            assert await take("ahead")  # then the process dies
        assert await eventually(
            lambda: take("on-time"), timeout_s=5, what="the dead worker's tracker lease"
        )


async def test_a_lane_lease_taken_on_a_clock_ahead_runs_out_on_time(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> None:
    async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:
        wallet = await harness.wallet()

        async def claim(owner: str) -> bool:
            async with unit_of_work(sessionmaker) as session:
                held = await wallets.claim_lanes(
                    session, [wallet.id], ANVIL_CHAIN_ID, owner=owner, ttl_s=_TTL_S
                )
            return wallet.id in held

        with pytest.MonkeyPatch.context() as patched:
            patched.setattr(clock, "datetime", _Ahead)
            assert await claim("ahead")  # then the process dies
        assert await eventually(
            lambda: claim("on-time"), timeout_s=5, what="the dead worker's lane lease"
        )


async def test_a_worker_whose_clock_runs_behind_takes_a_dead_owners_expired_leases(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> None:
    """Leases written on the server's clock were judged on the host's: with the host a minute
    behind, a dead owner's lane and tracker leases that ran out a second ago looked live for
    another minute, so its requests stayed queued and the chain untracked."""
    async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:
        wallet = await harness.wallet()
        tx_id = await harness.submit(wallet, value="1")
        async with unit_of_work(sessionmaker) as session:
            await session.execute(
                update(Chain)
                .where(Chain.chain_id == ANVIL_CHAIN_ID)
                .values(tracker_owner="dead", tracker_lease_until=_A_SECOND_AGO)
            )
            await session.execute(
                update(WalletChain)
                .where(WalletChain.wallet_id == wallet.id, WalletChain.chain_id == ANVIL_CHAIN_ID)
                .values(lease_owner="dead", lease_expires_at=_A_SECOND_AGO)
            )
        with pytest.MonkeyPatch.context() as patched:
            patched.setattr(clock, "datetime", _Behind)
            [tx] = await harness.run_until([tx_id], has_status(TxStatus.CONFIRMED), timeout_s=10)
    assert tx.status is TxStatus.CONFIRMED


async def test_a_take_skips_a_chain_row_a_stopped_tracker_holds_share_locked(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> None:
    """A tracker stopped (SIGSTOP) inside its record transaction keeps the chain row share
    locked (`holds_tracker_lease`); another worker's take must answer at once, not wait for
    it, which held that worker's rounds of the chain for as long as the process stayed
    stopped (review). It takes the lease once the transaction ends."""
    async with open_engine_harness(sessionmaker, anvil_url, master_key):
        engine = engine_of(sessionmaker)
        take = partial(_take, engine)

        assert await take("stopped")
        async with unit_of_work(sessionmaker) as session:
            assert await chains.holds_tracker_lease(session, ANVIL_CHAIN_ID, owner="stopped")

            async def ran_out() -> bool:  # a plain read: not held back by the share lock
                async with single_statements(engine) as db:
                    until = Chain.tracker_lease_until < func.statement_timestamp()
                    query = select(until).where(Chain.chain_id == ANVIL_CHAIN_ID)
                    return bool(await db.scalar(query))

            await eventually(ran_out, timeout_s=5, what="the stopped tracker's lease run out")
            assert not await asyncio.wait_for(take("other"), timeout=5)  # skipped, not waited
        assert await take("other")


async def _take(engine: AsyncEngine, owner: str) -> bool:
    """One worker's take of the chain's tracker lease, as the tracking loop's."""
    async with single_statements(engine) as db:
        return await chains.take_tracker_lease(db, ANVIL_CHAIN_ID, owner=owner, ttl_s=_TTL_S)
