"""The bulk statements of infra/db/bulk.py store values as a plain INSERT or UPDATE would."""

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.infra.db.bulk import insert_rows, update_rows

_metadata = MetaData()
_notes = Table(
    "bulk_notes",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("label", String(4), nullable=False),
)


async def _with_table(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session, session.begin():
        await session.run_sync(lambda s: _metadata.create_all(s.connection()))


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
async def test_a_value_longer_than_its_column_is_refused_not_cut(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await _with_table(sessionmaker)
    with pytest.raises(DBAPIError, match="too long"):
        async with sessionmaker() as session, session.begin():
            await insert_rows(session, _notes, [{"label": "abcd"}, {"label": "abcdef"}])
    async with sessionmaker() as session, session.begin():
        await insert_rows(session, _notes, [{"label": "abcd"}])
        row_id = (await session.execute(select(_notes.c.id))).scalar_one()
        with pytest.raises(DBAPIError, match="too long"):
            async with session.begin_nested():
                await update_rows(session, _notes, [{"id": row_id, "label": "abcdef"}])
        stored = (await session.execute(select(_notes.c.label))).scalars().all()
    assert stored == ["abcd"]


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
async def test_rows_get_their_ids_in_the_order_given(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await _with_table(sessionmaker)
    labels = [f"{n:04d}" for n in reversed(range(200))]
    async with sessionmaker() as session, session.begin():
        await insert_rows(session, _notes, [{"label": label} for label in labels])
        stored = (await session.execute(select(_notes.c.label).order_by(_notes.c.id))).all()
    assert [label for (label,) in stored] == labels
