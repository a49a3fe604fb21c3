"""Bind parameters that keep the number of distinct SQL texts small."""

from collections.abc import Collection
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, any_, bindparam
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import QueryableAttribute

from chainflow.infra.db.bulk import array_of

T = TypeVar("T")


def in_list(values: Collection[T]) -> list[T]:
    """`values` for an IN (...) clause, padded to the next power of two by repeating one.

    Each length of an IN list is its own SQL text, so its own prepared statement: batches of
    1 to 64 ids would be 64 statements per pooled connection, more than the driver's cache
    holds, and every miss costs a prepare round trip. Repeating a value does not change what
    IN matches, and leaves 7 lengths from 1 to 64.
    """
    padded = list(values)
    if padded:
        size = 1 << (len(padded) - 1).bit_length()
        padded += [padded[-1]] * (size - len(padded))
    return padded


def one_of(
    db: AsyncSession | AsyncConnection,
    column: ColumnElement[T] | QueryableAttribute[T],
    values: Collection[T],
) -> ColumnElement[bool]:
    """`column IN values`. On PostgreSQL `column = ANY(:array)`: one parameter whatever the
    number of values, so one SQL text, which SQLAlchemy compiles once. An IN list is rendered
    again at every execution, a bind name and a cast per value (a bulk round's lock of ~500
    requests: ~2% of a worker's CPU, docs/performance.md item 51), and PostgreSQL parses as
    many parameters. Elsewhere (SQLite) the IN list of `in_list`."""
    dialect = db.dialect if isinstance(db, AsyncConnection) else db.get_bind().dialect
    element = column.expression if isinstance(column, QueryableAttribute) else column
    if dialect.name == "postgresql":
        array: Any = bindparam(None, list(values), type_=array_of(element.type))
        return element == any_(array)
    return element.in_(in_list(values))


def one_of_named(column: ColumnElement[T], name: str, dialect: str) -> ColumnElement[bool]:
    """`one_of` for a statement built once and cached: the values are the parameter `name`,
    bound at each execution as `values_of(dialect, values)`."""
    if dialect == "postgresql":
        array: Any = bindparam(name, type_=array_of(column.type))
        return column == any_(array)
    return column.in_(bindparam(name, expanding=True))


def values_of(dialect: str, values: Collection[T]) -> list[T]:
    """What to bind to a `one_of_named` parameter: the values (PostgreSQL's array), or the
    padded IN list elsewhere."""
    return list(values) if dialect == "postgresql" else in_list(values)
