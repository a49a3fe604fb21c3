"""The custody lock on PostgreSQL: processes share it, a rotation takes it alone, and a wallet
is never sealed while a rotation holds it; on SQLite it is the data folder's `flock`."""

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from chainflow.core.errors import ConfigError
from chainflow.domain.master_key import foreign_key_ids
from chainflow.domain.wallets import service
from chainflow.infra.db.custody_lock import RotationRunning, hold_custody_lock
from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.local import generate_private_key

pytestmark = pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=2)
    yield engine
    await engine.dispose()


class TestCustodyLock:
    async def test_processes_share_it_and_a_rotation_is_refused_meanwhile(
        self, engine: AsyncEngine
    ) -> None:
        async with (
            hold_custody_lock(engine, exclusive=False),
            hold_custody_lock(engine, exclusive=False),
        ):
            with pytest.raises(ConfigError, match="stop every one before rotating"):
                async with hold_custody_lock(engine, exclusive=True):
                    pass
        async with hold_custody_lock(engine, exclusive=True):
            pass  # released with the processes, though their connections went back to a pool

    async def test_a_process_is_refused_while_a_rotation_holds_it(
        self, engine: AsyncEngine
    ) -> None:
        async with hold_custody_lock(engine, exclusive=True):
            with pytest.raises(ConfigError, match="rotation is running"):
                async with hold_custody_lock(engine, exclusive=False):
                    pass

    async def test_no_wallet_is_sealed_while_a_rotation_holds_it(self, engine: AsyncEngine) -> None:
        sessionmaker = create_sessionmaker(engine)
        async with hold_custody_lock(engine, exclusive=True):
            with pytest.raises(RotationRunning):
                async with unit_of_work(sessionmaker) as session:
                    await service.import_wallet(
                        session,
                        generate_private_key(),
                        master=MasterKey.generate(),
                        sealed_rows=foreign_key_ids,
                    )
