from sqlalchemy import Column, Integer, MetaData, Table, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

from chainflow.infra.db.params import in_list, one_of_named, values_of

_T = Table("t", MetaData(), Column("id", Integer))


def test_in_list_pads_to_a_power_of_two_with_the_same_set() -> None:
    for n in range(1, 130):
        values = list(range(n))
        padded = in_list(values)
        assert len(padded) & (len(padded) - 1) == 0  # a power of two
        assert len(padded) < 2 * n
        assert set(padded) == set(values)
        assert padded[:n] == values


def test_in_list_of_nothing_is_empty() -> None:
    assert in_list([]) == []


def test_lengths_one_to_64_make_seven_statements() -> None:
    assert len({len(in_list(range(n))) for n in range(1, 65)}) == 7


def test_a_named_list_is_one_array_parameter_on_postgresql_whatever_its_length() -> None:
    query = select(_T.c.id).where(one_of_named(_T.c.id, "ids", "postgresql"))
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    sql = str(query.compile(dialect=dialect))
    assert "= ANY (%(ids)s::INTEGER[])" in sql, sql
    assert values_of("postgresql", [3, 1, 2]) == [3, 1, 2]  # as given, not padded


def test_a_named_list_is_a_padded_in_list_on_sqlite() -> None:
    query = select(_T.c.id).where(one_of_named(_T.c.id, "ids", "sqlite"))
    compiled = query.compile(dialect=SQLiteDialect_pysqlite())
    assert "IN (__[POSTCOMPILE_ids])" in str(compiled), str(compiled)
    assert values_of("sqlite", [3, 1, 2]) == [3, 1, 2, 2]
