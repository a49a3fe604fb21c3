"""The PostgreSQL advisory lock that keeps a master-key rotation apart from the processes
holding a master key: shared by each API and worker process for its life (and by each wallet
creation), exclusive for a rotation. Never waited for. On SQLite the data folder's `flock`
plays this role (infra/datadir.py), and these calls do nothing.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from chainflow.core.errors import ConfigError, Unavailable

# One key per database: "cfmkey" in ASCII.
_KEY = 0x63_66_6D_6B_65_79
_TRY_EXCLUSIVE = text("SELECT pg_try_advisory_lock(:key)")
_TRY_SHARED = text("SELECT pg_try_advisory_lock_shared(:key)")
_TRY_SHARED_IN_TRANSACTION = text("SELECT pg_try_advisory_xact_lock_shared(:key)")
ROTATION_RUNNING = (
    "a master-key rotation is running on this database; start again when it has finished"
)


class RotationRunning(Unavailable):
    code = "master_key_rotation_running"


@asynccontextmanager
async def hold_custody_lock(engine: AsyncEngine, *, exclusive: bool) -> AsyncIterator[None]:
    """Hold the lock on a connection of its own until exit.

    Raises:
        ConfigError: the other kind of holder is running.
    """
    if engine.dialect.name != "postgresql":
        yield
        return
    async with engine.connect() as connection:
        if not await _try_lock(connection, exclusive=exclusive):
            raise ConfigError(
                "a Chainflow process (api, worker or wallet) is using this database; stop every "
                "one before rotating the master key"
                if exclusive
                else ROTATION_RUNNING
            )
        try:
            yield
        finally:
            # The connection goes back to the pool: a session lock would outlive this block.
            await connection.invalidate()


async def _try_lock(connection: AsyncConnection, *, exclusive: bool) -> bool:
    query = _TRY_EXCLUSIVE if exclusive else _TRY_SHARED
    held = await connection.scalar(query, {"key": _KEY})
    await connection.commit()
    return bool(held)


async def share_custody_lock(session: AsyncSession) -> None:
    """Share the lock until the session's transaction ends (a wallet being sealed).

    Raises:
        RotationRunning: a rotation holds it.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    if not await session.scalar(_TRY_SHARED_IN_TRANSACTION, {"key": _KEY}):
        raise RotationRunning(ROTATION_RUNNING)
