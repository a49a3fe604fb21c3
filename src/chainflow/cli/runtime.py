"""What every CLI command shares: settings, logging, a migrated database, one-line errors.

Imported by every command module, so it imports at its top only what `chainflow --help`
needs; each function imports the rest when it runs (cli/__init__.py).
"""

import asyncio
import gc
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from chainflow.core.settings import Settings
    from chainflow.infra.signing.keystore import MasterKey

T = TypeVar("T")

RECURSION_LIMIT = 1000
"""CPython's own default. py_ecc (imported through eth-account, which a process imports when
its engine opens or it first signs: infra/signing/type2.load_eth_account) raises the limit to
100,000 at import (py_ecc/__init__.py), past what the C stack holds: C code that recurses on
nested input (the stdlib JSON parser, repr) then crashed the process instead of raising
RecursionError (issue 14)."""


def restore_recursion_limit() -> None:
    """Undo py_ecc's import-time limit; called once the imports of a command are done."""
    sys.setrecursionlimit(RECURSION_LIMIT)


def settings_for_cli() -> "Settings":
    """Load settings and configure logging (to stderr)."""
    from chainflow.core.logging import configure_logging
    from chainflow.core.settings import LogFormat, load_settings
    from chainflow.infra import metrics

    settings = load_settings()
    configure_logging(json_format=settings.log_format is LogFormat.JSON, level=settings.log_level)
    metrics.configure(enabled=settings.metrics_enabled)
    return settings


@asynccontextmanager
async def open_database(
    settings: "Settings",
) -> AsyncIterator["async_sessionmaker[AsyncSession]"]:
    """A sessionmaker on a database that is migrated to this version's head.

    Raises:
        ConfigError: the database is not migrated. Unavailable: it cannot be reached.
    """
    from sqlalchemy.exc import DBAPIError

    from chainflow.core.errors import ConfigError, Unavailable
    from chainflow.infra.datadir import secure_data_dir
    from chainflow.infra.db.engine import create_engine, create_sessionmaker
    from chainflow.migrations.runner import current_revision, head_revision

    secure_data_dir(settings)
    engine = create_engine(settings.resolved_database_url, pool_size=2)
    try:
        try:
            async with engine.connect() as connection:
                revision = await connection.run_sync(current_revision)
        except (OSError, DBAPIError) as exc:
            raise Unavailable(f"cannot reach the database: {type(exc).__name__}") from None
        if revision != head_revision():
            raise ConfigError(
                f"the database is at revision {revision or 'none'}, this version needs "
                f"{head_revision()}: run `chainflow db upgrade`"
            )
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


def check_keys_at_start(settings: "Settings", master: "MasterKey") -> None:
    """Refuse to start (one line, exit 1) with master keys that did not wrap every wallet, or
    while a rotation runs: checked before any server or loop starts, where a failure would
    end in a traceback (issue 14)."""
    from chainflow.domain.wallets.custody import check_master_key
    from chainflow.infra.db.custody_lock import share_custody_lock
    from chainflow.infra.db.uow import unit_of_work

    async def check() -> None:
        async with open_database(settings) as sessionmaker, unit_of_work(sessionmaker) as session:
            await share_custody_lock(session)
            await check_master_key(session, master=master)

    run(check)


def migrate(settings: "Settings") -> None:
    """Migrate the database to head. Raises: Unavailable, if it cannot be reached."""
    from sqlalchemy.exc import DBAPIError

    from chainflow.core.errors import Unavailable
    from chainflow.migrations.runner import upgrade

    try:
        upgrade(settings.resolved_database_url)
    except (OSError, DBAPIError) as exc:
        raise Unavailable(f"cannot reach the database: {type(exc).__name__}") from None


def run(coroutine: Callable[[], Awaitable[T]]) -> T:
    """Run an async command body on uvloop (a third less event-loop CPU than asyncio's own).

    What is alive by now (modules, the app, SQLAlchemy's metadata) lives as long as the
    process, so it is moved out of the collector's reach: a full collection of it took ~40 ms,
    a pause every request in flight would wait for.
    """

    async def body() -> T:
        return await coroutine()

    import uvloop

    restore_recursion_limit()  # a command's own late imports (the API app) are done by now
    gc.freeze()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(body())
