"""A chaos scenario's private Redis or PostgreSQL whose port another process took between
`free_port` and the server's own bind starts again on a new port (before, redis-server exited
while the scenario pinged whatever held the port, and PostgreSQL failed to start)."""

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import pytest
from redis import Redis

from tests.chaos import servers
from tests.support.processes import PortTaken, free_port

pytestmark = pytest.mark.timeout(120)


@contextmanager
def _taken() -> Iterator[int]:
    """A port another socket listens on (it accepts connections and never answers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _picks_first(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    """`free_port` of the servers picks `port` first, as if it were free when it looked."""
    picked = iter([port])
    monkeypatch.setattr(servers, "free_port", lambda: next(picked, None) or free_port())


async def test_a_private_redis_whose_port_was_taken_starts_on_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with _taken() as taken:
        _picks_first(monkeypatch, taken)
        async with servers.private_redis() as redis:
            assert redis.port != taken
            with Redis.from_url(redis.url, socket_timeout=5) as client:
                assert client.ping()


async def test_a_redis_that_could_not_bind_is_not_taken_for_the_other_one_answering() -> None:
    """Before, the other server's PONG passed for ours, which had exited."""
    other = servers.RedisServer(free_port())
    other.start()
    try:
        await other.ready()
        mine = servers.RedisServer(other.port)
        mine.start()
        try:
            with pytest.raises(PortTaken):
                await mine.ready()
        finally:
            mine.stop()
    finally:
        other.stop()


async def test_a_private_postgres_whose_port_was_taken_starts_on_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with _taken() as taken:
        _picks_first(monkeypatch, taken)
        async with servers.private_postgres() as postgres:
            assert postgres.port != taken
            connection = await asyncpg.connect(postgres.url)
            try:
                assert await connection.fetchval("SELECT 1") == 1
            finally:
                await connection.close()
