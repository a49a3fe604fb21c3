"""What every CLI command shares: settings, logging, a migrated database, one-line errors.

Imported by every command module, so it imports at its top only what `chainflow --help`
needs; each function imports the rest when it runs (cli/__init__.py).
"""

import asyncio
import contextlib
import gc
import math
import signal
import sys
import time
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


# PostgreSQL error classes that no wait mends (the rest, e.g. 08 connection exceptions,
# 57P03 cannot-connect-now, 53300 too many connections, are waited out).
_REFUSALS = {
    "28": "invalid authorization (role or password)",
    "3D": "no such database",
    "42": "insufficient privilege or a schema error",
}


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
            sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
            if isinstance(sqlstate, str) and sqlstate[:2] in _REFUSALS:
                # Waiting cannot mend these: a role or password refused, no such database,
                # no privilege on its tables.
                raise ConfigError(
                    f"the database refused us: {_REFUSALS[sqlstate[:2]]} (SQLSTATE {sqlstate}); "
                    "check CHAINFLOW_DATABASE_URL"
                ) from None
            raise Unavailable(f"cannot reach the database: {type(exc).__name__}") from None
        if revision != head_revision():
            raise ConfigError(
                f"the database is at revision {revision or 'none'}, this version needs "
                f"{head_revision()}: run `chainflow db upgrade`"
            )
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


# Waiting for the database at start: the first retry soon (a database restarting with us),
# then doubling, at most this long between tries; a warning at the first miss, then at most
# once a minute while it lasts.
_DB_RETRY_FIRST_S = 0.25
_DB_RETRY_MAX_S = 5.0
_DB_WAIT_LOG_EVERY_S = 60.0


async def wait_for_database(settings: "Settings", stop: asyncio.Event) -> bool:
    """Until the database answers: True; False if `stop` is set first.

    A database that cannot be reached (down, restarting, not yet started by the same compose
    file) is tried again with backoff, with a one-line warning; one that answers but is not
    migrated is an error at once. Raises: ConfigError.
    """
    from chainflow.core.logging import get_logger

    log = get_logger(__name__)
    delay_s, logged_at = _DB_RETRY_FIRST_S, -math.inf
    while not stop.is_set():
        # Raced against `stop`: a connect to a host that drops packets takes its timeout.
        attempt = asyncio.ensure_future(_database_error(settings))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait((attempt, stopping), return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not attempt.done():
            attempt.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await attempt
            break
        error = attempt.result()
        if error is None:
            return True
        if time.monotonic() - logged_at >= _DB_WAIT_LOG_EVERY_S:
            logged_at = time.monotonic()
            log.warning("database.waiting", error=error, retry_in_s=delay_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay_s)
        delay_s = min(delay_s * 2, _DB_RETRY_MAX_S)
    return False


async def _database_error(settings: "Settings") -> str | None:
    """None if the database answers and is migrated; why not if it cannot be reached."""
    from chainflow.core.errors import Unavailable

    try:
        async with open_database(settings):
            return None
    except Unavailable as exc:
        return exc.detail


def database_answers(settings: "Settings") -> bool:
    """`wait_for_database` for a command about to start a service: False when SIGTERM or
    SIGINT came while it waited (the command then exits 0, as it would have once started)."""

    async def wait() -> bool:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT)
        # The handlers from before (`chainflow.cli.main`'s: exit 0 while starting) are put
        # back after: the loop's removal leaves SIGTERM's default, and a worker stopped
        # between here and its engine's own handler died of the signal (exit -15; the chaos
        # suite's SIGTERM of a worker just restarted).
        previous = {sig: signal.getsignal(sig) for sig in signals}
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
        try:
            return await wait_for_database(settings, stop)
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
                if previous[sig] is not None:  # None: not set from Python; left as is
                    signal.signal(sig, previous[sig])

    return run(wait)


def check_keys_at_start(settings: "Settings", master: "MasterKey") -> None:
    """Refuse to start (one line, exit 1) with master keys that did not wrap every wallet, or
    while a rotation runs: checked before any server or loop starts, where a failure would
    end in a traceback (issue 14)."""
    from chainflow.domain.master_key import check_master_key
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


# The cyclic collector's thresholds in every command run by `run` (api, worker, dev and the
# CLI's async commands; not `db upgrade`, whose Alembic runs its own loop). At CPython's
# (700, 10, 10) a worker's round promoted what it holds across its awaits (the rows and
# statements of a round of 100s of requests) to the older generations, whose collections then
# walked every object the process made since start-up: 10-19% of the workers' CPU in a run of
# batches (docs/performance.md item 46; gen2 collections of ~45 ms each). A young collection
# walks what is alive of the young objects, and a batch round keeps most of what it makes
# alive until it ends (its rows, statements, snapshots): at 10,000 every round's objects were
# walked several times and promoted, and every 20 of those a gen1 collection of ~30 ms walked
# them again (the collector 4-7% of each worker's CPU, item 51). Every 100,000 net
# allocations most rounds have ended, and reference counting has freed their objects, before
# a collection sees them; cyclic garbage waits longer for its collection (a young one is
# ~30 ms at most, as a gen1 one was).
GC_THRESHOLDS = (100_000, 20, 20)


def run(coroutine: Callable[[], Awaitable[T]]) -> T:
    """Run an async command body on uvloop (a third less event-loop CPU than asyncio's own).

    What is alive by now (modules, the app, SQLAlchemy's metadata) lives as long as the
    process, so it is moved out of the collector's reach: a full collection of it took ~40 ms,
    a pause every request in flight would wait for. The collector then runs at
    `GC_THRESHOLDS`, not CPython's (700, 10, 10).
    """

    async def body() -> T:
        return await coroutine()

    import uvloop

    restore_recursion_limit()  # a command's own late imports (the API app) are done by now
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(body())
