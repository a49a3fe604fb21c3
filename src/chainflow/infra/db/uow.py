"""Unit of work: the caller owns the transaction; services only flush."""

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

# SQLite allows one writer and every transaction here starts with BEGIN IMMEDIATE. Waiting on
# SQLite's busy handler sleeps in steps of up to 100 ms, so within one process the writers
# queue on an asyncio lock instead: same serialisation, no sleeping.
_sqlite_locks: "weakref.WeakKeyDictionary[AsyncEngine, asyncio.Lock]" = weakref.WeakKeyDictionary()


def _lock_for(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> contextlib.AbstractAsyncContextManager[object]:
    bind = sessionmaker.kw.get("bind")
    if not isinstance(bind, AsyncEngine) or bind.dialect.name != "sqlite":
        return contextlib.nullcontext()
    lock = _sqlite_locks.get(bind)
    if lock is None:
        lock = _sqlite_locks[bind] = asyncio.Lock()
    return lock


@asynccontextmanager
async def unit_of_work(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """Open a session in a transaction; commit on success, roll back on any error."""
    async with _lock_for(sessionmaker), sessionmaker() as session, session.begin():
        yield session
