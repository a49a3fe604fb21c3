"""infra/db/params.one_of matches what an IN list matches, on both dialects, and on PostgreSQL
is one SQL text whatever the number of values."""

import uuid
from typing import Any

from sqlalchemy import Column, Integer, MetaData, Table, Uuid, event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.infra.db.params import one_of

_metadata = MetaData()
_items = Table(
    "params_items",
    _metadata,
    Column("id", Uuid, primary_key=True),
    Column("n", Integer, nullable=False),
)
_IDS = [uuid.uuid4() for _ in range(40)]


async def _matched(session: AsyncSession, wanted: list[uuid.UUID]) -> set[int]:
    query = select(_items.c.n).where(one_of(session, _items.c.id, wanted))
    return set((await session.scalars(query.with_for_update())).all())


async def test_one_of_matches_the_rows_of_its_values_and_no_others(
    sessionmaker: async_sessionmaker[AsyncSession], dialect: str
) -> None:
    async with sessionmaker() as session, session.begin():
        await session.run_sync(lambda s: _metadata.create_all(s.connection()))
        await session.execute(_items.insert(), [{"id": i, "n": n} for n, i in enumerate(_IDS)])
    texts: list[str] = []
    engine = sessionmaker.kw["bind"].sync_engine

    def seen(
        _conn: Any, _cursor: Any, statement: str, _params: Any, _ctx: Any, _many: bool
    ) -> None:
        if "params_items" in statement:
            texts.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        async with sessionmaker() as session, session.begin():
            assert await _matched(session, _IDS[:3]) == {0, 1, 2}
            assert await _matched(session, [_IDS[5], _IDS[5], uuid.uuid4()]) == {5}
            assert await _matched(session, _IDS) == set(range(40))
            assert await _matched(session, []) == set()
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    if dialect == "postgresql":  # one array parameter: one prepared statement for all sizes
        assert len(set(texts)) == 1, texts
