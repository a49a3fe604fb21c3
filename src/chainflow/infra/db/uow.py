"""Unit of work: the caller owns the transaction; services only flush."""

import asyncio
import contextlib
import os
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from chainflow.infra.db.commit_hooks import after_commit
from chainflow.infra.db.engine import READ_ONLY_OPTION

# SQLite allows one writer and every transaction here starts with BEGIN IMMEDIATE. Waiting on
# SQLite's busy handler sleeps in steps of up to 100 ms, so within one process the writers
# queue on an asyncio lock instead: same serialisation, no sleeping. The lock belongs to the
# database file, not to an engine: `chainflow dev` runs the API and the workers on an engine
# each, and a lock per engine left them to meet in the busy handler (BEGIN IMMEDIATE waited
# 5 ms on average there, the largest cost of the embedded shape).
_sqlite_locks: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Lock] = {}


def writer_lock(
    db: async_sessionmaker[AsyncSession] | AsyncEngine,
) -> contextlib.AbstractAsyncContextManager[object]:
    """The lock units of work on this SQLite database queue on (a no-op for PostgreSQL)."""
    bind = db if isinstance(db, AsyncEngine) else db.kw.get("bind")
    if not isinstance(bind, AsyncEngine) or bind.dialect.name != "sqlite":
        return contextlib.nullcontext()
    key = (asyncio.get_running_loop(), _database_of(bind))
    lock = _sqlite_locks.get(key)
    if lock is None:
        _forget_closed_loops()
        lock = _sqlite_locks[key] = asyncio.Lock()
    return lock


def _database_of(engine: AsyncEngine) -> str:
    database = engine.url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return f"{id(engine)}:{database}"  # private to its engine (or not a plain path)
    return os.path.realpath(database)


def _forget_closed_loops() -> None:
    for key in [key for key in _sqlite_locks if key[0].is_closed()]:
        del _sqlite_locks[key]


@asynccontextmanager
async def unit_of_work(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """Open a session in a transaction; commit on success, roll back on any error."""
    callbacks: list[Callable[[], None]] = []
    token = after_commit.set(callbacks)
    try:
        async with writer_lock(sessionmaker), sessionmaker() as session, session.begin():
            yield session
    finally:
        after_commit.reset(token)
    for callback in callbacks:
        callback()


# The AUTOCOMMIT view of each engine (it shares the engine's pool), made once: making one
# costs ~30 µs. The view holds the engine's sync core, not the AsyncEngine key, so an entry
# goes with its engine.
_autocommit: "weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine]" = weakref.WeakKeyDictionary()


@asynccontextmanager
async def single_statements(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for a caller whose every write is one statement that stands on its own.

    On PostgreSQL each statement commits by itself: no `BEGIN` and `COMMIT` round trips, and
    a bare connection rather than a session (the API's CPU per submission: 2.8 -> 2.0 ms). Each read
    sees what is committed when it runs, as in a READ COMMITTED transaction. On SQLite this is
    one transaction on the writer lock, which is no weaker.
    """
    if engine.dialect.name != "postgresql":
        async with writer_lock(engine), engine.begin() as connection:
            yield connection
        return
    autocommit = _autocommit.get(engine)
    if autocommit is None:
        autocommit = _autocommit[engine] = engine.execution_options(isolation_level="AUTOCOMMIT")
    connection = _ConnectedOnUse(autocommit)
    try:
        yield connection
    finally:
        await asyncio.shield(connection.close())  # as AsyncConnection's own exit


class _ConnectedOnUse(AsyncConnection):
    """An AsyncConnection that takes its pooled connection at its first statement, not when
    opened: a submission whose target is remembered and which a group commit stores runs
    none of its own (the pool's checkout and return were 3% of the API's CPU per
    submission, docs/performance.md item 33). Statements only: what else a caller needs of
    a started connection (transactions, raw connections) is not for `single_statements`."""

    __slots__ = ()

    async def _started(self) -> None:
        if self.sync_connection is None:
            await self.start()

    @property
    def dialect(self) -> Dialect:
        return self.sync_engine.dialect  # the connection's, connected or not

    @dialect.setter
    def dialect(self, dialect: Dialect) -> None:
        self._proxied.dialect = dialect

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        await self._started()
        return await super().execute(*args, **kwargs)

    async def scalar(self, *args: Any, **kwargs: Any) -> Any:
        await self._started()
        return await super().scalar(*args, **kwargs)

    async def scalars(self, *args: Any, **kwargs: Any) -> Any:
        await self._started()
        return await super().scalars(*args, **kwargs)

    async def close(self) -> None:
        if self.sync_connection is not None:
            await super().close()


def engine_of(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    """The engine `sessionmaker` is bound to (for `single_statements`, `read_only`)."""
    bind = sessionmaker.kw.get("bind")
    if not isinstance(bind, AsyncEngine):
        raise TypeError("the sessionmaker is not bound to an AsyncEngine")
    return bind


# The read-only view of each engine (it shares the engine's pool), made once, as above.
_read_only: "weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine]" = weakref.WeakKeyDictionary()


@asynccontextmanager
async def read_only(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session for reads alone, outside the writers' queue; it must not write.

    On SQLite a unit of work takes the write lock up front (BEGIN IMMEDIATE), so even a look
    that finds nothing to do is a turn on the one writer. This session begins DEFERRED instead:
    a WAL snapshot that neither waits for the writer nor holds it up (a write in it would fail
    with "database is locked" rather than wait). On PostgreSQL each statement stands on its own
    (AUTOCOMMIT): no BEGIN and COMMIT round trips. Nothing is committed either way.
    """
    bind = engine_of(sessionmaker)
    view = _read_only.get(bind)
    if view is None:
        options = (
            {"isolation_level": "AUTOCOMMIT"}
            if bind.dialect.name == "postgresql"
            else {READ_ONLY_OPTION: True}
        )
        view = _read_only[bind] = bind.execution_options(**options)
    async with AsyncSession(view, expire_on_commit=False) as session:
        yield session
