"""Build the async engine and sessionmaker for PostgreSQL (asyncpg) or SQLite (aiosqlite)."""

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import anyio
import orjson
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util.concurrency import await_, in_greenlet

from chainflow.core import jsondepth
from chainflow.core.errors import ConfigError

# The execution option of a connection that only reads (infra/db/uow.read_only).
READ_ONLY_OPTION = "chainflow_read_only"


def async_url(url: str) -> str:
    """Pick the async driver for a plain `postgresql://` or `sqlite:///` URL."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    else:
        raise ConfigError(f"invalid setting CHAINFLOW_DATABASE_URL: unsupported backend {backend}")
    return parsed.render_as_string(hide_password=False)


def _configure_sqlite(engine: AsyncEngine) -> None:
    # SQLite ignores FOR UPDATE: every transaction takes the write lock up front
    # (BEGIN IMMEDIATE), which gives one writer per lane (DESIGN §6.2).
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A read-only unit (uow.read_only) begins DEFERRED: a WAL snapshot that neither waits
        # for the writer nor holds it up; it must not write.
        if conn.get_execution_options().get(READ_ONLY_OPTION):
            conn.exec_driver_sql("BEGIN")
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _close_sqlite_whole(engine: AsyncEngine) -> None:
    """Roll back and close every aiosqlite connection this engine drops, cancelled or not.

    A statement, commit or rollback cut short by a cancel (a client leaving a stream, a
    timeout, a round's tracking task cancelled, shutdown) makes SQLAlchemy invalidate its
    connection. Its close then left the database's write lock held: the cut statement stays
    unfinalized (its cursor lives on in the caller's traceback), so sqlite3_close_v2 leaves a
    "zombie" connection that keeps its transaction until the garbage collector finalizes it,
    and every later writer waited out `busy_timeout` ("database is locked"); and under an
    anyio cancel scope, which cancels again at every await, SQLAlchemy's shielded close was
    cut short too, and aiosqlite stopped its thread without closing the connection. Here the
    connection is rolled back (which aborts the cut statement) and closed, shielded from every
    cancel (it waits for the statement in its thread: on SQLite a short wait), and the cancel
    goes on from the caller's next await.
    """
    dialect = engine.sync_engine.dialect

    def close(dbapi_connection: Any) -> None:
        driver = dialect.get_driver_connection(dbapi_connection)
        if not in_greenlet():  # the garbage collector's clean-up: nothing may be awaited
            driver.stop()
            return
        await_(_close_shielded(driver))

    # Instance attributes: this engine's dialect only (the pool calls these for every close).
    dialect.do_close = close  # type: ignore[method-assign]
    dialect.do_terminate = close  # type: ignore[method-assign]


async def _close_shielded(driver: Any) -> None:
    with anyio.CancelScope(shield=True):
        with contextlib.suppress(Exception):  # no zombie keeps the transaction (see above)
            await driver.rollback()
        with contextlib.suppress(Exception):
            await driver.close()  # stops its thread too, even if the close fails


def _ensure_folder(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def create_engine(
    url: str, *, pool_size: int = 10, pre_ping: bool = True, overflow: int | None = None
) -> AsyncEngine:
    """Create the engine for a database URL (driver chosen automatically).

    Every engine hides bound parameters from its error messages (`hide_parameters`): rows
    carry sealed keys, and an error's text reaches logs and tracebacks.

    `pre_ping=False` saves a round trip per checkout: a connection that died (database
    restarted) then fails one unit of work, and SQLAlchemy recycles the pool; only for callers
    that retry on their own, as the workers' rounds do.

    `overflow` (default `pool_size`): connections opened beyond the pool under a burst and
    closed as soon as they are returned; each costs PostgreSQL a new backend (~5 ms of CPU).
    """
    full = async_url(url)
    # Stored JSON is read back with the same nesting bound as every other JSON (issue 14).
    if full.startswith("sqlite"):
        _ensure_folder(full)
        engine = create_async_engine(
            full,
            connect_args={"timeout": 30},
            json_deserializer=jsondepth.loads,
            json_serializer=dumps_json,
            hide_parameters=True,
        )
        _configure_sqlite(engine)
        _close_sqlite_whole(engine)
        return engine
    engine = create_async_engine(
        full,
        pool_size=pool_size,
        max_overflow=pool_size if overflow is None else overflow,
        pool_pre_ping=pre_ping,
        hide_parameters=True,
        json_deserializer=jsondepth.loads,
        json_serializer=dumps_json,
    )
    # An INSERT of many rows without RETURNING is one multi-row VALUES statement (up to 1,000
    # rows each), not asyncpg's executemany, which PostgreSQL runs as one statement per row:
    # the event rows and outbox events of every status change (docs/performance.md).
    engine.sync_engine.dialect.use_insertmanyvalues_wo_returning = True
    return engine


def dumps_json(value: Any) -> str:
    """JSON columns as text: orjson (an event's snapshot in ~5 µs, json.dumps ~60 µs: every
    status change writes one, issue 16), json.dumps for what orjson refuses (integers beyond
    64 bits)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


async def warm_pool(engine: AsyncEngine, connections: int) -> None:
    """Open `connections` pooled connections now rather than under the first burst of
    requests, when each would pay the connect and the dialect's first queries in-line."""
    if engine.dialect.name == "sqlite":
        return
    opened = await asyncio.gather(*(engine.connect() for _ in range(connections)))
    for connection in opened:
        await connection.close()  # back to the pool, which keeps up to pool_size


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (services return them)."""
    return async_sessionmaker(engine, expire_on_commit=False)
