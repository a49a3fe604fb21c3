"""Leases run on the database server's clock (PostgreSQL), not on the host clock of the
process that takes them. Found with a distributed deployment: a worker whose host clock ran
30 s ahead wrote lane and tracker leases that, for the other workers, ran 35 s; once it was
killed, every wallet's new requests stayed queued for 33 s (the README promises a killed
worker's lanes move within 5 s) and the chain was not tracked meanwhile."""

from datetime import datetime, timedelta, tzinfo

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core import clock
from chainflow.domain.chains import service as chains
from chainflow.domain.wallets import service as wallets
from chainflow.infra.db.uow import engine_of, single_statements, unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.engine import open_engine_harness
from tests.support.polling import eventually

pytestmark = pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
_TTL_S = 0.2


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
        engine = engine_of(sessionmaker)

        async def take(owner: str) -> bool:
            async with single_statements(engine) as db:
                return await chains.take_tracker_lease(
                    db, ANVIL_CHAIN_ID, owner=owner, ttl_s=_TTL_S
                )

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
