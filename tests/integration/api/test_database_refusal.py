"""A PostgreSQL server that refuses new connections (max_connections or a role's limit
reached, shutting down, starting up) is a retryable `503 database_unavailable`, as a server
that is down: asyncpg's adapter raises these as a bare DBAPIError, which answered 500
`internal_error` (found with a distributed deployment whose PostgreSQL was full and then
restarting: 29 of 1,964 submissions answered 500)."""

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from chainflow.api.app import create_app
from chainflow.core.settings import Settings
from tests.support.fixtures import open_api

pytestmark = pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)


@pytest.fixture
async def limited_role(database_url: str) -> AsyncIterator[str]:
    """A login role with every right on the test database's tables; dropped at the end."""
    role = f"cf_refused_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN')
        await admin.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"')
        await admin.execute(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        yield role
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
        )
        await admin.execute(f'DROP OWNED BY "{role}"')
        await admin.execute(f'DROP ROLE "{role}"')
    finally:
        await admin.close()


async def test_a_connection_the_server_refuses_is_503_database_unavailable(
    settings: Settings, database_url: str, limited_role: str
) -> None:
    url = make_url(database_url).set(username=limited_role)
    limited = settings.model_copy(
        update={"database_url": url.render_as_string(hide_password=False)}
    )
    async with open_api(create_app(limited)) as api:
        headers = await api.key("read")
        assert (await api.client.get("/v1/chains", headers=headers)).status_code == 200
        admin = await asyncpg.connect(database_url)
        try:
            # The role may open no more connection ("too many connections for role", SQLSTATE
            # 53300, as "too many clients already" once max_connections is reached), and the
            # API's pooled ones are cut: the first request meets a dead one, the pool is
            # recycled, and the next ones must connect anew.
            await admin.execute(f'ALTER ROLE "{limited_role}" CONNECTION LIMIT 0')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                limited_role,
            )
            answers = [await api.client.get("/v1/chains", headers=headers) for _ in range(4)]
        finally:
            await admin.close()
    assert [answer.status_code for answer in answers] == [503] * 4, answers[-1].text
    assert {answer.json()["code"] for answer in answers} == {"database_unavailable"}
    assert {answer.headers["Retry-After"] for answer in answers} == {"1"}
