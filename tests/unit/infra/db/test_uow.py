"""Units of work on SQLite queue on one lock per database file, whatever the engine."""

import asyncio
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.db.uow import unit_of_work, writer_lock


def locked(sessionmaker: async_sessionmaker[AsyncSession]) -> bool:
    lock = writer_lock(sessionmaker)
    assert isinstance(lock, asyncio.Lock)
    return lock.locked()


async def test_engines_on_one_sqlite_file_share_the_writer_lock(tmp_path: Path) -> None:
    # `chainflow dev` runs the API and the workers on an engine each over one file.
    url = f"sqlite:///{tmp_path}/one.db"
    engines = [create_engine(url), create_engine(url), create_engine(f"sqlite:///{tmp_path}/2.db")]
    api, workers, elsewhere = (create_sessionmaker(engine) for engine in engines)
    try:
        async with unit_of_work(api):
            assert locked(workers)  # the workers' next unit of work waits here
            assert not locked(elsewhere)
        assert not locked(workers)
    finally:
        for engine in engines:
            await engine.dispose()


async def test_postgresql_units_of_work_take_no_process_lock() -> None:
    sessionmaker = create_sessionmaker(create_engine("postgresql://postgres@127.0.0.1/unused"))
    assert not isinstance(writer_lock(sessionmaker), asyncio.Lock)
