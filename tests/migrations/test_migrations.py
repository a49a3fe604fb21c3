"""Migrations: the head matches the models, and upgrade/downgrade round-trips, on both dialects."""

import asyncio
import re
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.domain.transactions.models import TxEventRow
from chainflow.infra.db.engine import create_engine
from chainflow.infra.db.uow import unit_of_work
from chainflow.migrations.runner import (
    current_revision,
    diff_against_models,
    downgrade,
    head_revision,
    upgrade,
)
from tests.support.databases import TestDatabases
from tests.support.invariants import orphan_violations
from tests.support.polling import eventually

T = TypeVar("T")


@pytest.fixture
async def empty_url(dialect: str, test_databases: dict[str, TestDatabases]) -> str:
    return await test_databases[dialect].empty()


async def schema_state(url: str) -> tuple[str | None, list[object]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            revision = await connection.run_sync(current_revision)
            diff = await connection.run_sync(diff_against_models)
        return revision, diff
    finally:
        await engine.dispose()


class TestMigrations:
    async def test_head_matches_the_models(self, empty_url: str) -> None:
        await asyncio.to_thread(upgrade, empty_url)
        assert await schema_state(empty_url) == (head_revision(), [])

    async def test_downgrade_to_base_and_upgrade_again(self, empty_url: str) -> None:
        await asyncio.to_thread(upgrade, empty_url)
        await asyncio.to_thread(downgrade, empty_url, "base")
        revision, diff = await schema_state(empty_url)
        assert revision is None
        assert diff  # every table is gone, so the models differ
        await asyncio.to_thread(upgrade, empty_url)
        assert await schema_state(empty_url) == (head_revision(), [])


class TestLogForeignKeys:
    async def test_the_log_tables_check_no_request_row(self, empty_url: str) -> None:
        """Issue 17: a row of tx_events or tx_attempts ran a foreign-key check on PostgreSQL,
        a query that locked its request row (FOR KEY SHARE), ~6 per confirmed transaction;
        those rows are written only with their request's (docs/performance.md item 45).
        Migration 0014 drops both keys, and its downgrade puts them back as they were."""
        await asyncio.to_thread(upgrade, empty_url)
        assert await _keys_to_transactions(empty_url) == {"tx_events": [], "tx_attempts": []}
        await asyncio.to_thread(downgrade, empty_url, "0013_events_lean")
        cascading = [("transactions", ["tx_id"], ["id"], "CASCADE")]
        assert await _keys_to_transactions(empty_url) == {
            "tx_events": cascading,
            "tx_attempts": cascading,
        }
        await asyncio.to_thread(upgrade, empty_url)
        assert await schema_state(empty_url) == (head_revision(), [])

    async def test_the_invariants_find_a_row_without_its_request(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """What the keys checked, the invariants every chaos and crash test reads check."""
        assert await orphan_violations(sessionmaker) == []
        async with unit_of_work(sessionmaker) as session:
            session.add(TxEventRow(tx_id=uuid.uuid4(), to_status="queued"))
        assert await orphan_violations(sessionmaker) == ["1 tx_events rows without their request"]


async def _keys_to_transactions(url: str) -> dict[str, list[tuple[object, ...]]]:
    def read(connection: object) -> dict[str, list[tuple[object, ...]]]:
        schema = inspect(connection)
        return {
            table: [
                (
                    key["referred_table"],
                    key["constrained_columns"],
                    key["referred_columns"],
                    key["options"].get("ondelete"),
                )
                for key in schema.get_foreign_keys(table)
            ]
            for table in ("tx_events", "tx_attempts")
        }

    return await _read_schema(url, read)


async def _read_schema(url: str, read: Callable[[Any], T]) -> T:
    """`read` run on a connection to the database at `url` (its inspector's reads)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(read)
    finally:
        await engine.dispose()


class TestHotUpdates:
    @pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
    async def test_a_rounds_update_of_its_attempts_is_hot(self, database_url: str) -> None:
        """Issue 17: a round's attempts are inserted together, then updated together; none of
        the columns set is indexed, so with room on their page the UPDATE writes no index
        entry. At fillfactor 100 about 5% were HOT. (Only the first UPDATE after the insert
        is counted: the room for a second one comes from pruning the first's old versions,
        which any long transaction in the same cluster can delay.)"""
        engine = create_engine(database_url)
        try:
            for _ in range(10):
                async with engine.begin() as connection:
                    # no transactions rows: the foreign key is not what is measured
                    await connection.execute(text("SET LOCAL session_replication_role = replica"))
                    ids = (await connection.execute(_SIGN_ROUND)).scalars().all()
                async with engine.begin() as connection:
                    await connection.execute(_SENT, {"ids": list(ids)})

            async def counted() -> tuple[int, int] | None:
                async with engine.connect() as connection:  # each backend reports within 1 s
                    updated, hot = (await connection.execute(_HOT)).one()
                return (updated, hot) if updated == 10 * 64 else None

            updated, hot = await eventually(counted)
        finally:
            await engine.dispose()
        assert hot >= 0.9 * updated


_SIGN_ROUND = text(
    "INSERT INTO tx_attempts (id, tx_id, kind, status, nonce, gas_limit, max_fee_per_gas_wei,"
    " max_priority_fee_per_gas_wei, raw, hash, broadcast_count, created_at)"
    " SELECT gen_random_uuid(), gen_random_uuid(), 'original', 'signed', n, 21000,"
    " 2000000000, 1000000000, decode(repeat('ab', 110), 'hex'),"
    " '0x' || md5(random()::text) || md5(random()::text), 0, now()"
    " FROM generate_series(1, 64) AS n RETURNING id"
)
_SENT = text(
    "UPDATE tx_attempts SET status = 'submitted', broadcast_count = 1, first_sent_at = now(),"
    " last_sent_at = now() WHERE id = ANY(:ids)"
)
_HOT = text(
    "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'tx_attempts'"
)


class TestWebhookFairIndex:
    async def test_0016_adds_the_per_endpoint_due_index_and_its_downgrade_drops_it(
        self, empty_url: str
    ) -> None:
        """The claim per endpoint walks ix_webhook_deliveries_endpoint_due (endpoint_id,
        next_attempt_at, event_pk; pending deliveries only); 0016 builds it, its downgrade
        drops it, and upgrading again matches the models."""
        await asyncio.to_thread(upgrade, empty_url)
        assert await _delivery_indexes(empty_url) >= {_ENDPOINT_DUE}
        # partial: the schema diff against the models does not compare index conditions
        assert await _index_condition(empty_url, _ENDPOINT_DUE[0]) == "status = 'pending'"
        await asyncio.to_thread(downgrade, empty_url, "0014_log_lean")
        assert _ENDPOINT_DUE not in await _delivery_indexes(empty_url)
        await asyncio.to_thread(upgrade, empty_url)
        assert await schema_state(empty_url) == (head_revision(), [])


_ENDPOINT_DUE = (
    "ix_webhook_deliveries_endpoint_due",
    ("endpoint_id", "next_attempt_at", "event_pk"),
)


async def _delivery_indexes(url: str) -> set[tuple[str, tuple[str, ...]]]:
    def read(connection: object) -> set[tuple[str, tuple[str, ...]]]:
        indexes = inspect(connection).get_indexes("webhook_deliveries")
        return {(str(i["name"]), tuple(str(c) for c in i["column_names"])) for i in indexes}

    return await _read_schema(url, read)


async def _index_condition(url: str, index: str) -> str:
    """The WHERE of a partial index as stored, without PostgreSQL's casts and parentheses."""
    if url.startswith("sqlite"):
        query = text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :index")
    else:
        query = text(
            "SELECT pg_get_expr(i.indpred, i.indrelid) FROM pg_index AS i"
            " WHERE i.indexrelid = CAST(:index AS regclass)"
        )

    def read(connection: Any) -> str:
        stored = str(connection.execute(query, {"index": index}).scalar_one())
        where = stored.rpartition(" WHERE ")[2] if url.startswith("sqlite") else stored
        return re.sub(r"::(character varying|[a-z]+)|[()]", "", where).strip()

    return await _read_schema(url, read)
