"""Column types that behave the same on PostgreSQL and SQLite."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, DateTime, Dialect, Numeric, String, and_, func, or_
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.types import TypeDecorator, TypeEngine


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes; SQLite drops the zone, so it is restored on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime refused: use timezone-aware UTC")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: Any, _dialect: Dialect) -> datetime | None:
        if not isinstance(value, datetime):
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class WeiAmount(TypeDecorator[int]):
    """Unsigned 256-bit integers: NUMERIC(78,0) on PostgreSQL, decimal text on SQLite."""

    impl = Numeric(78, 0)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(78))
        return dialect.type_descriptor(Numeric(78, 0))

    def process_bind_param(self, value: int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return str(value) if dialect.name == "sqlite" else Decimal(value)

    def process_result_value(self, value: Any, _dialect: Dialect) -> int | None:
        return None if value is None else int(value)


def wei_at_least(
    column: ColumnElement[int | None] | QueryableAttribute[int | None],
    value_wei: int,
    *,
    dialect: str,
) -> ColumnElement[bool]:
    """`column >= value_wei` for a WeiAmount column, exact on both dialects: SQLite holds
    decimal text, which compares as text ("9" > "10"), so there a longer number is larger
    and numbers of one length compare digit by digit."""
    if dialect != "sqlite":
        return column >= value_wei
    digits = len(str(value_wei))
    length = func.length(column)
    return or_(length > digits, and_(length == digits, column >= value_wei))
