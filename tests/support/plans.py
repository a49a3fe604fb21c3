"""The plan PostgreSQL runs a statement by as a prepared statement, as asyncpg sends it: for
tests that hold a hot query to an index under custom and generic plans."""

import json
from typing import Any

import asyncpg


async def prepared_plan(
    raw: asyncpg.Connection, statement: str, parameters: Any, *, generic: bool
) -> dict[str, Any]:
    """The plan of `statement` (with $n parameters) prepared on `raw`, a connection inside a
    transaction (SET LOCAL): its custom plan for `parameters` or (`generic`) the plan of no
    values. EXECUTE takes no parameters: each value goes as a literal, quoted by the server."""
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
    return plan
