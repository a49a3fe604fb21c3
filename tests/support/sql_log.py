"""The SQL a block of a test sends, to assert which statements run (and which do not)."""

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


@contextmanager
def statements(sessionmaker: async_sessionmaker[AsyncSession]) -> Iterator[list[str]]:
    """The SQL sent on the sessionmaker's engine inside the block, whitespace collapsed."""
    engine = sessionmaker.kw["bind"].sync_engine
    sent: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        sent.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)
