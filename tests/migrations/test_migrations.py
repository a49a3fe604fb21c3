"""Migrations: the head matches the models, and upgrade/downgrade round-trips, on both dialects."""

import asyncio

import pytest

from chainflow.infra.db.engine import create_engine
from chainflow.migrations.runner import (
    current_revision,
    diff_against_models,
    downgrade,
    head_revision,
    upgrade,
)
from tests.support.databases import TestDatabases


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
