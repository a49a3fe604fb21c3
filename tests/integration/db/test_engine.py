"""Stored JSON is read back under the service-wide nesting bound (issue 14), on both dialects."""

import uuid

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.jsondepth import MAX_JSON_DEPTH, JsonTooDeep
from chainflow.domain.apikeys.models import ApiKey
from chainflow.domain.apikeys.service import create_api_key
from chainflow.infra.db.uow import unit_of_work

Sessions = async_sessionmaker[AsyncSession]


def nested(depth: int) -> list[object]:
    value: list[object] = ["read"]
    for _ in range(depth - 1):
        value = [value]
    return value


async def stored_scopes(sessionmaker: Sessions, scopes: list[object]) -> uuid.UUID:
    """A key whose JSON `scopes` column holds `scopes` as stored (json.dumps writes it)."""
    async with unit_of_work(sessionmaker) as session:
        key, _ = await create_api_key(session, ["read"])
        await session.execute(update(ApiKey).where(ApiKey.id == key.id).values(scopes=scopes))
    return key.id


async def read_scopes(sessionmaker: Sessions, key_id: uuid.UUID) -> object:
    async with unit_of_work(sessionmaker) as session:
        return await session.scalar(select(ApiKey.scopes).where(ApiKey.id == key_id))


class TestStoredJson:
    async def test_json_nested_past_the_bound_is_refused_on_read(
        self, sessionmaker: Sessions
    ) -> None:
        key_id = await stored_scopes(sessionmaker, nested(MAX_JSON_DEPTH + 1))
        with pytest.raises(JsonTooDeep):
            await read_scopes(sessionmaker, key_id)

    async def test_json_within_the_bound_reads_back(self, sessionmaker: Sessions) -> None:
        key_id = await stored_scopes(sessionmaker, nested(MAX_JSON_DEPTH))
        assert await read_scopes(sessionmaker, key_id) == nested(MAX_JSON_DEPTH)
