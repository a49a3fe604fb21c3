"""One UPDATE, or one INSERT, for many rows, each with its own values.

An executemany UPDATE is one statement per row on the server: PostgreSQL parses, plans,
locks and logs each one (pg_stat_statements counts a call per row), and the driver sends a
Bind/Execute per row. On PostgreSQL `update_rows` sends the rows as one array per column and
joins them with `unnest`: one statement, one plan, whatever the number of rows, and one SQL
text (one prepared statement) whatever the batch size. SQLite keeps the executemany.

A multi-row INSERT (SQLAlchemy's insertmanyvalues) is one statement, but its text has one
VALUES group per row: every round's size is a new SQL text, so a new prepared statement (a
Parse round trip, then PostgreSQL parses and plans a statement of thousands of parameters),
and the driver binds each row's parameters one by one. `insert_rows` sends the rows as one
array per column too: `INSERT … SELECT * FROM unnest(…)`, one text whatever the number.
"""

from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from enum import Enum as PyEnum
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Enum,
    Row,
    String,
    Table,
    Text,
    bindparam,
    cast,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.types import TypeEngine

from chainflow.infra.db.engine import dumps_json

# The new value of each column, from the row's value of each name (a column of the unnested
# arrays on PostgreSQL, a bind parameter on SQLite).
Values = Callable[[Mapping[str, ColumnElement[Any]]], Mapping[str, Any]]


def array_of(column_type: TypeEngine[Any]) -> ARRAY[Any]:
    """The SQL type of an array of `column_type` values, as a bind parameter."""
    # A non-native Enum is text in the table; its array is text[] of the members' values. A
    # String(n) goes as text[] too: a cast to VARCHAR(n)[] cuts a longer value silently, where
    # storing text into the VARCHAR(n) column refuses it (an assignment cast).
    if isinstance(column_type, (Enum, String)):
        return ARRAY(String())
    return ARRAY(column_type)


def plain_value(value: object) -> object:
    """A value as an element of such an array (an enum member as its value)."""
    return value.value if isinstance(value, PyEnum) else value


async def update_rows(
    db: AsyncSession | AsyncConnection,
    table: Table,
    rows: Sequence[Mapping[str, object]],
    *,
    key: str = "id",
    values: Values | None = None,
    types: Mapping[str, TypeEngine[Any]] | None = None,
    where: ColumnElement[bool] | None = None,
    returning: Sequence[ColumnElement[Any]] = (),
) -> Sequence[Row[Any]] | None:
    """UPDATE `table` for each row of `rows` (all with the same names): the row whose `key`
    column equals the row's `key` value gets `values(row)`, by default every other name of the
    row assigned to its column. A key value may match several table rows (all are updated;
    `where` narrows them, e.g. to one chain). A name that is not a column of `table` needs its
    SQL type in `types`.

    With `returning`, on PostgreSQL: those columns of every row updated, as this statement
    wrote it (in no particular order); None on SQLite (an executemany returns nothing), where
    the caller reads what it needs instead."""
    if not rows:
        return [] if returning else None
    names = list(rows[0])
    build = values or (lambda row: {name: row[name] for name in names if name != key})
    dialect = db.dialect if isinstance(db, AsyncConnection) else db.get_bind().dialect
    if dialect.name == "postgresql":
        # Only a statement made of its arguments alone is kept: `values` and `where` may
        # hold values of this call (a literal, a chain id).
        cache_key = None
        if values is None and where is None and types is None:
            cache_key = ("update", table, tuple(names), key, tuple(returning))
        statement = _STATEMENTS.get(cache_key) if cache_key else None
        if statement is None:
            arrays = [
                bindparam(
                    f"a_{name}", type_=array_of((types or {}).get(name) or table.c[name].type)
                )
                for name in names
            ]
            unnested = func.unnest(*arrays).table_valued(*names).render_derived(name="v")
            statement = (
                update(table)
                .where(table.c[key] == unnested.c[key], *([] if where is None else [where]))
                .values(build({name: unnested.c[name] for name in names}))
            )
            if returning:
                statement = statement.returning(*returning)
            if cache_key:
                _keep(cache_key, statement)
        params = _arrays(rows, names)
        if returning:
            return (await db.execute(statement, params)).all()
        await db.execute(statement, params)
        return None
    statement = (
        update(table)
        .where(table.c[key] == bindparam(f"b_{key}"), *([] if where is None else [where]))
        .values(build({name: bindparam(f"b_{name}") for name in names}))
    )
    await db.execute(statement, [{f"b_{k}": v for k, v in row.items()} for row in rows])
    return None


async def insert_rows(
    db: AsyncSession | AsyncConnection,
    table: Table,
    rows: Sequence[Mapping[str, object]],
    *,
    returning: Sequence[ColumnElement[Any]] = (),
) -> Sequence[Row[Any]] | None:
    """INSERT `rows` (all with the same names) into `table`, in the order given. Every column
    with a Python-side default must be given: the unnested rows get none (a column left out
    is NULL, or its server default). JSON values are serialized as the engine does. With
    `returning`, as `update_rows`: those columns of the rows as stored, None on SQLite."""
    if not rows:
        return [] if returning else None
    names = list(rows[0])
    dialect = db.dialect if isinstance(db, AsyncConnection) else db.get_bind().dialect
    if dialect.name != "postgresql":
        await db.execute(insert(table), list(rows))
        return None
    json_names = {name for name in names if isinstance(table.c[name].type, JSON)}
    cache_key = ("insert", table, tuple(names), tuple(returning))
    statement = _STATEMENTS.get(cache_key)
    if statement is None:
        statement = _insert_statement(table, names, json_names, returning)
        _keep(cache_key, statement)
    params = _arrays(rows, names, json_names)
    if returning:
        return (await db.execute(statement, params)).all()
    await db.execute(statement, params)
    return None


# Built statements by what they are built from: building one (the unnest, its columns, the
# DML around them) and SQLAlchemy's cache key of a new statement object cost ~0.4-0.8 ms of
# the worker's CPU per bulk statement, ~10 of them per round; a kept statement's cache key is
# memoized on it. Statements are immutable, so one serves every session.
_STATEMENTS: dict[tuple[object, ...], Any] = {}
_STATEMENTS_MAX = 256


def _keep(cache_key: tuple[object, ...], statement: Any) -> None:
    if len(_STATEMENTS) >= _STATEMENTS_MAX:
        _STATEMENTS.clear()
    _STATEMENTS[cache_key] = statement


def _insert_statement(
    table: Table,
    names: Sequence[str],
    json_names: Container[str],
    returning: Sequence[ColumnElement[Any]],
) -> Any:
    missing = [c.name for c in table.c if c.default is not None and c.name not in names]
    if missing:
        raise ValueError(f"insert_rows into {table.name} needs {', '.join(missing)}")
    arrays = [
        bindparam(
            f"a_{name}",
            type_=ARRAY(Text()) if name in json_names else array_of(table.c[name].type),
        )
        for name in names
    ]
    # WITH ORDINALITY + ORDER BY: rows get their serial ids in the order given (an event's id
    # order is its transaction's tx_seq order, which webhooks deliver in), not in whatever
    # order a plan might produce them.
    unnested = (
        func.unnest(*arrays).table_valued(*names, with_ordinality="ord").render_derived(name="v")
    )
    columns = [
        cast(unnested.c[name], table.c[name].type) if name in json_names else unnested.c[name]
        for name in names
    ]
    rows_in_order = select(*columns).order_by(unnested.c.ord)
    statement = insert(table).from_select(names, rows_in_order, include_defaults=False)
    return statement.returning(*returning) if returning else statement


def _arrays(
    rows: Sequence[Mapping[str, object]], names: Sequence[str], json_names: Container[str] = ()
) -> dict[str, list[object]]:
    """The bind value of each name's array (`a_<name>`): its values in the rows' order, an
    enum member as its value, a JSON value serialized. The rows are split into columns by C
    code (itemgetter, zip), and a column is walked again only when it holds an enum member
    or JSON: building the arrays value by value was ~5% of the draining worker's CPU."""
    if len(names) == 1:
        columns: Iterable[Sequence[object]] = [[row[names[0]] for row in rows]]
    else:
        columns = zip(*map(itemgetter(*names), rows), strict=True)
    params: dict[str, list[object]] = {}
    for name, values in zip(names, columns, strict=True):
        array: list[object]
        if name in json_names:
            array = [None if value is None else dumps_json(value) for value in values]
        elif any(issubclass(kind, PyEnum) for kind in set(map(type, values))):
            array = [plain_value(value) for value in values]
        else:
            array = list(values)
        params[f"a_{name}"] = array
    return params
