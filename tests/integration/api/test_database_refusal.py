"""A PostgreSQL server that refuses new connections (max_connections or a role's limit
reached, shutting down, starting up) is a retryable `503 database_unavailable`, as a server
that is down: asyncpg's adapter raises these as a bare DBAPIError, which answered 500
`internal_error` (found with a distributed deployment whose PostgreSQL was full and then
restarting: 29 of 1,964 submissions answered 500). Such a 503 never claims that nothing was
stored: a connection lost during its commit may have stored the request."""

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.api.app import create_app
from chainflow.api.problems import database_unavailable
from chainflow.core.settings import Settings
from tests.support.fixtures import open_api
from tests.support.pg_proxy import pg_proxy

# The wallet the lost-commit test imports (anvil's second well-known account).
KEY_HEX = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"

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


async def test_a_connection_lost_during_its_commit_says_the_request_may_be_stored(
    settings: Settings, database_url: str
) -> None:
    """The server committed, its answer was lost: a 503 saying "nothing was stored" made a
    client without an Idempotency-Key send the same write twice."""
    url = make_url(database_url)
    async with pg_proxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port)
        through_proxy = settings.model_copy(
            update={"database_url": proxied.render_as_string(hide_password=False)}
        )
        async with open_api(create_app(through_proxy)) as api:
            headers = await api.key("wallets")
            proxy.lose_commit_answer_after(b"INSERT INTO wallets")
            answer = await api.client.post(
                "/v1/wallets", headers=headers, json={"private_key": KEY_HEX, "label": "lost"}
            )
    assert proxy.answers_lost == 1
    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == "database_unavailable"
    stored = await asyncpg.connect(database_url)
    try:
        assert await stored.fetchval("SELECT count(*) FROM wallets WHERE label = 'lost'") == 1
    finally:
        await stored.close()
    detail = answer.json()["detail"]
    assert "nothing was stored" not in detail
    assert "may have been stored" in detail
    assert "Idempotency-Key" in detail


async def test_a_resource_exhausted_mid_query_is_no_retryable_refusal(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Class 53 beyond "too many connections" (out of memory, disk full, a configured limit
    exceeded mid-query) is a fault of the request (500), not a refusal to retry (503)."""
    async with sessionmaker() as session:
        await session.execute(text("SET temp_file_limit = '64kB'"))
        await session.execute(text("SET work_mem = '64kB'"))
        with pytest.raises(sa_exc.DBAPIError) as raised:
            await session.execute(
                text("SELECT g FROM generate_series(1, 200000) g ORDER BY g DESC")
            )
    assert "temp_file_limit" in str(raised.value)  # SQLSTATE 53400
    assert not database_unavailable(raised.value)
