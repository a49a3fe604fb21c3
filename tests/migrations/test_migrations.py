"""Migrations: the head matches the models, and upgrade/downgrade round-trips, on both dialects."""

import asyncio

import pytest
from sqlalchemy import text

from chainflow.infra.db.engine import create_engine
from chainflow.migrations.runner import (
    current_revision,
    diff_against_models,
    downgrade,
    head_revision,
    upgrade,
)
from tests.support.databases import TestDatabases
from tests.support.polling import eventually


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
