"""Unit of work: the caller owns the transaction; services only flush."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


@asynccontextmanager
async def unit_of_work(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """Open a session in a transaction; commit on success, roll back on any error."""
    async with sessionmaker() as session, session.begin():
        yield session
