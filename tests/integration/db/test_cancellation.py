"""A unit of work on SQLite cancelled mid-statement leaves no lock behind (infra/db/engine.py).

Starlette cancels a stream's task when its client leaves (an anyio cancel scope, which cancels
again at every await); timeouts and shutdown cancel tasks once. Either used to leave the cut
connection holding its transaction, and so the database's write lock: every later writer
waited out its busy timeout and failed "database is locked".
"""

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.db.uow import unit_of_work

_WAIT_S = 10


class Blocker:
    """A SQL function `block()` that holds its statement in aiosqlite's thread until told."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.released = threading.Event()

    def __call__(self) -> int:
        self.started.set()
        self.released.wait(_WAIT_S)
        return 1


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, Path, Blocker]]:
    path, blocker = tmp_path / "cut.db", Blocker()
    engine = create_engine(f"sqlite:///{path}")
    with_blocker(engine, blocker)
    async with unit_of_work(create_sessionmaker(engine)) as session:
        await session.execute(text("CREATE TABLE t (x INTEGER)"))
    yield engine, path, blocker
    await engine.dispose()


def with_blocker(engine: AsyncEngine, blocker: Blocker) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _register(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function("block", 0, blocker)

    @event.listens_for(engine.sync_engine.pool, "invalidate")
    def _release(_connection: Any, _record: Any, _exc: Any) -> None:
        blocker.released.set()  # the cancel reached SQLAlchemy while the statement ran


async def blocked_write(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with unit_of_work(sessionmaker) as session:  # BEGIN IMMEDIATE: the write lock
        await session.execute(text("INSERT INTO t VALUES (1)"))
        await session.execute(text("SELECT block()"))


async def cancel_task(sessionmaker: async_sessionmaker[AsyncSession], cut: asyncio.Event) -> None:
    """A timeout or a shutdown: the task is cancelled once."""
    task = asyncio.ensure_future(blocked_write(sessionmaker))
    await cut.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def cancel_scope(sessionmaker: async_sessionmaker[AsyncSession], cut: asyncio.Event) -> None:
    """A client leaving a stream: Starlette cancels the scope, again at every await."""

    async def body() -> None:
        with anyio.CancelScope() as scope:
            waiter = asyncio.ensure_future(cut.wait())
            waiter.add_done_callback(lambda _: scope.cancel())
            await blocked_write(sessionmaker)
        assert scope.cancelled_caught

    await asyncio.ensure_future(body())


def write_elsewhere(path: Path) -> None:
    """Another writer (another process would do the same), with a 2 s busy timeout."""
    connection = sqlite3.connect(path, timeout=2, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO t VALUES (2)")
        connection.execute("COMMIT")
    finally:
        connection.close()


Canceller = Callable[[async_sessionmaker[AsyncSession], asyncio.Event], Awaitable[None]]


class TestCancelledStatement:
    @pytest.mark.parametrize("cancel", [cancel_task, cancel_scope], ids=["task", "scope"])
    async def test_leaves_no_lock_and_nothing_written(
        self, database: tuple[AsyncEngine, Path, Blocker], cancel: Canceller
    ) -> None:
        engine, path, blocker = database
        cut = asyncio.Event()

        async def cut_when_blocked() -> None:
            assert await asyncio.to_thread(blocker.started.wait, _WAIT_S)
            cut.set()  # the statement is in aiosqlite's thread now

        await asyncio.gather(cancel(create_sessionmaker(engine), cut), cut_when_blocked())
        await asyncio.to_thread(write_elsewhere, path)  # "database is locked" after 2 s before
        async with unit_of_work(create_sessionmaker(engine)) as session:
            assert (await session.execute(text("SELECT x FROM t"))).scalars().all() == [2]
