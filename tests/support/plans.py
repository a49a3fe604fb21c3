"""The plan PostgreSQL runs a statement by as a prepared statement, as asyncpg sends it, and
the statements a unit of work sends: for tests that hold a hot query to an index under custom
and generic plans."""

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


async def statements_sent(
    sessionmaker: async_sessionmaker[AsyncSession],
    run: Callable[[AsyncSession], Awaitable[object]],
) -> list[tuple[str, Any]]:
    """The statements (with their parameters) `run` sends in a unit of work, rolled back so
    that the tables stay as they were."""
    seen: list[tuple[str, Any]] = []
    engine = sessionmaker.kw["bind"].sync_engine

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", grab)
    try:
        async with sessionmaker() as session, session.begin():
            await run(session)
            await session.rollback()
    finally:
        event.remove(engine, "before_cursor_execute", grab)
    return seen


async def prepared_plan(
    raw: asyncpg.Connection, statement: str, parameters: Any, *, generic: bool
) -> dict[str, Any]:
    """The plan of `statement` (with $n parameters) prepared on `raw`, a connection inside a
    transaction (SET LOCAL): its custom plan for `parameters` or (`generic`) the plan of no
    values. EXECUTE takes no parameters: each value goes as a literal, quoted by the server."""
    assert raw.is_in_transaction(), "SET LOCAL outside a transaction would plan with defaults"
    prepared = await raw.prepare(statement)
    types = [
        await raw.fetchval("SELECT format_type($1, NULL)", t.oid) for t in prepared.get_parameters()
    ]
    declared = f" ({', '.join(types)})" if types else ""
    await raw.execute(f"PREPARE plan_probe{declared} AS {statement}")
    mode = "force_generic_plan" if generic else "force_custom_plan"
    await raw.execute(f"SET LOCAL plan_cache_mode = {mode}")
    literals = [
        await raw.fetchval(f"SELECT quote_nullable($1::{t}) || '::{t}'", value)
        for t, value in zip(types, parameters or (), strict=True)
    ]
    arguments = f" ({', '.join(literals)})" if literals else ""
    raw_plan = await raw.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE plan_probe{arguments}")
    await raw.execute("DEALLOCATE plan_probe")
    document = json.loads(raw_plan) if isinstance(raw_plan, str) else raw_plan
    plan: dict[str, Any] = document[0]["Plan"]
    if generic and types:
        # A generic plan is made for no values: its conditions name the parameters.
        assert re.search(r"\$\d", json.dumps(plan)), f"not a generic plan: {plan}"
    return plan


async def session_plan(
    sessionmaker: async_sessionmaker[AsyncSession],
    statement: str,
    parameters: Any,
    *,
    generic: bool,
) -> dict[str, Any]:
    """prepared_plan on a connection of `sessionmaker`, in a transaction rolled back."""
    async with sessionmaker() as session, session.begin():
        # session.begin() sends nothing: a first statement opens the transaction SET LOCAL needs.
        await session.execute(text("SELECT 1"))
        connection = await session.connection()
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None
        plan = await prepared_plan(raw, statement, parameters, generic=generic)
        await session.rollback()
    return plan
