"""API keys in the database, both dialects: listed without secrets, revoked once, idempotently."""

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.domain.apikeys import service
from chainflow.domain.apikeys.service import ApiKeyNotFound, InvalidApiKey
from chainflow.infra.db.uow import unit_of_work

Sessionmaker = async_sessionmaker[AsyncSession]


class TestList:
    async def test_lists_every_key_oldest_first_revoked_ones_too(
        self, sessionmaker: Sessionmaker
    ) -> None:
        async with unit_of_work(sessionmaker) as session:
            first, _ = await service.create_api_key(session, ["read"], name="ci")
            second, _ = await service.create_api_key(session, ["admin"])
        async with unit_of_work(sessionmaker) as session:
            await service.revoke_api_key(session, first.id)
        async with unit_of_work(sessionmaker) as session:
            keys = await service.list_api_keys(session)
            assert [(k.id, k.name, k.scopes) for k in keys] == [
                (first.id, "ci", ["read"]),
                (second.id, None, ["admin"]),
            ]
            assert keys[0].revoked_at is not None
            assert keys[1].revoked_at is None


class TestRevoke:
    async def test_a_revoked_key_no_longer_authenticates(self, sessionmaker: Sessionmaker) -> None:
        async with unit_of_work(sessionmaker) as session:
            row, token = await service.create_api_key(session, ["transactions:write"])
        async with unit_of_work(sessionmaker) as session:
            _, newly = await service.revoke_api_key(session, row.id)
        assert newly
        async with unit_of_work(sessionmaker) as session:
            with pytest.raises(InvalidApiKey):
                await service.authenticate(session, token)

    async def test_revoking_again_keeps_the_first_time(self, sessionmaker: Sessionmaker) -> None:
        async with unit_of_work(sessionmaker) as session:
            row, _ = await service.create_api_key(session, ["read"])
        async with unit_of_work(sessionmaker) as session:
            first, _ = await service.revoke_api_key(session, row.id)
            revoked_at = first.revoked_at
        async with unit_of_work(sessionmaker) as session:
            again, newly = await service.revoke_api_key(session, row.id)
            assert (newly, again.revoked_at) == (False, revoked_at)

    async def test_unknown_id_is_not_found(self, sessionmaker: Sessionmaker) -> None:
        async with unit_of_work(sessionmaker) as session:
            with pytest.raises(ApiKeyNotFound):
                await service.revoke_api_key(session, uuid.uuid4())
