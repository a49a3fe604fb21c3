"""The event stream from real processes (an API and a worker on PostgreSQL and Redis, and
`chainflow dev` on SQLite): a client that disconnects and resumes with Last-Event-ID sees
every event once, in cursor order; idle streams get keep-alives; streams are bounded per
process and hold no admission slot."""

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from sqlalchemy import select

from chainflow.domain.events import EventRow
from chainflow.infra.anvil import run_anvil
from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.signing.keystore import MasterKey
from chainflow.migrations.runner import upgrade
from tests.e2e.test_concurrency import dev_anvil_url, prepare
from tests.support.databases import REDIS_URL
from tests.support.polling import eventually
from tests.support.processes import base_env, listening_port, processes, wait_http

SINK = "0x000000000000000000000000000000000000dEaD"


@dataclass
class Reader:
    """What one connection to the stream received."""

    events: list[dict[str, Any]] = field(default_factory=list)  # {id, event, data}
    comments: list[str] = field(default_factory=list)


async def read_stream(
    http: aiohttp.ClientSession, url: str, reader: Reader, *, until: int, **headers: str
) -> None:
    """Read frames until `until` events in all have arrived, then disconnect."""
    async with http.get(url, headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith(":"):
                reader.comments.append(line)
            elif line:
                name, _, value = line.partition(": ")
                fields[name] = value
            elif fields:
                reader.events.append(
                    {
                        "id": fields["id"],
                        "event": fields["event"],
                        "data": orjson.loads(fields["data"]),
                    }
                )
                fields = {}
                if len(reader.events) >= until:
                    return


async def submit(http: aiohttp.ClientSession, api: str, addresses: list[str], count: int) -> None:
    for i in range(count):
        body = {
            "chain_id": 31337,
            "wallet": addresses[i % len(addresses)],
            "to": SINK,
            "value": "1",
        }
        async with http.post(f"{api}/v1/transactions", json=body) as response:
            assert response.status == 202, await response.text()


async def settled(url: str, confirmed: int) -> list[int]:
    """Every cursor in the outbox, once `confirmed` requests are and every event has one."""
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)

    async def check() -> list[int] | None:
        async with sessionmaker() as session:
            rows = (await session.execute(select(EventRow.cursor, EventRow.type))).all()
        done = sum(1 for _, kind in rows if kind == "transaction.confirmed")
        cursors = [cursor for cursor, _ in rows if cursor is not None]
        if done < confirmed or len(cursors) < len(rows):
            return None
        return sorted(cursors)

    try:
        return await eventually(check, timeout_s=120, interval_s=0.2)
    finally:
        await engine.dispose()


async def exercise(api: str, url: str, token: str, addresses: list[str]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    stream = f"{api}/v1/events/stream"
    async with aiohttp.ClientSession(headers=headers) as http:
        await submit(http, api, addresses, 5)
        before = await settled(url, 5)
        first = Reader()
        await asyncio.wait_for(read_stream(http, f"{stream}?after=0", first, until=12), 60)
        await submit(http, api, addresses, 5)  # while disconnected
        cursors = await settled(url, 10)
        assert len(cursors) > len(before) > 12
        second = Reader()
        last_id = first.events[-1]["id"]
        await asyncio.wait_for(
            read_stream(
                http, stream, second, until=len(cursors) - 12, **{"Last-Event-ID": last_id}
            ),
            60,
        )
        seen = [int(e["id"]) for e in first.events + second.events]
        assert seen == cursors == list(range(1, len(cursors) + 1))  # once each, in order
        for event in first.events + second.events:
            assert event["event"] == event["data"]["type"]
            assert int(event["id"]) == event["data"]["cursor"]
            assert event["data"]["id"].startswith("evt_")
        await check_filters_and_limits(http, api, stream, last=len(cursors))


async def check_filters_and_limits(
    http: aiohttp.ClientSession, api: str, stream: str, *, last: int
) -> None:
    confirmed = Reader()
    url = f"{stream}?after=0&types=transaction.conf*"
    await asyncio.wait_for(read_stream(http, url, confirmed, until=10), 60)
    assert {e["event"] for e in confirmed.events} == {"transaction.confirmed"}
    # An idle stream (nothing after the last cursor) gets keep-alive comments, and holds
    # neither an admission slot (CHAINFLOW_API_MAX_IN_FLIGHT=2) nor more than its stream slot.
    async with http.get(f"{stream}?after={last}") as idle:
        assert idle.status == 200
        for _ in range(3):  # ": stream open", then keep-alives
            line = await asyncio.wait_for(idle.content.readline(), 30)
            assert line.startswith(b":")
            await idle.content.readline()
        async with http.get(stream) as refused:
            assert refused.status == 503
            assert (await refused.json())["code"] == "too_many_streams"
            assert refused.headers["Retry-After"]
        for _ in range(3):
            async with http.get(f"{api}/v1/events?limit=2") as page:
                assert page.status == 200, await page.text()
                assert [e["cursor"] for e in (await page.json())["items"]] == [1, 2]


def master_env(master: MasterKey) -> str:
    return base64.b64encode(master.secret.reveal()).decode()


STREAM_SETTINGS = {
    "event_stream_keepalive_s": "0.3",
    "event_stream_max_clients": "1",
    "api_max_in_flight": "2",
    "log_format": "json",
    "log_level": "warning",
}


@pytest.fixture
async def anvil() -> AsyncIterator[str]:
    async with run_anvil() as url:
        yield url


class TestStreamResume:
    @pytest.mark.timeout(300)
    @pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
    async def test_distributed_api_and_worker(
        self, database_url: str, anvil: str, tmp_path: Path
    ) -> None:
        master = MasterKey.generate()
        addresses, token = await prepare(database_url, anvil, master)
        env = base_env(
            database_url=database_url,
            redis_url=REDIS_URL,
            master_key=master_env(master),
            **STREAM_SETTINGS,
        )
        commands = [["api", "--port", "0"], ["worker"]]
        with processes(commands, env, tmp_path) as started:
            port = listening_port(started[0])
            wait_http(f"http://127.0.0.1:{port}/readyz", started[0])
            await exercise(f"http://127.0.0.1:{port}", database_url, token, addresses[:2])

    @pytest.mark.timeout(300)
    async def test_chainflow_dev_on_sqlite(self, tmp_path: Path) -> None:
        master = MasterKey.generate()
        data_dir = tmp_path / "data"
        url = f"sqlite:///{data_dir / 'chainflow.db'}"
        await asyncio.to_thread(upgrade, url)
        env = base_env(data_dir=str(data_dir), master_key=master_env(master), **STREAM_SETTINGS)
        command = ["dev", "--anvil", "--anvil-port", "0", "--port", "0"]
        with processes([command], env, tmp_path) as started:
            port = listening_port(started[0])
            wait_http(f"http://127.0.0.1:{port}/healthz", started[0])
            anvil_url = await dev_anvil_url(url)
            addresses, token = await prepare(url, anvil_url, master, register_chain=False)
            await exercise(f"http://127.0.0.1:{port}", url, token, addresses[:2])


class TestStreamsLeftMidRead:
    @pytest.mark.timeout(300)
    async def test_chainflow_dev_keeps_answering_after_clients_leave_mid_catch_up(
        self, tmp_path: Path
    ) -> None:
        """Browsers leave pages while a stream catches up from the database: on SQLite a read
        cancelled mid-query left its connection and the database lock behind, and `chainflow
        dev` answered nothing after (found by the console's browser tests)."""
        master = MasterKey.generate()
        data_dir = tmp_path / "data"
        url = f"sqlite:///{data_dir / 'chainflow.db'}"
        await asyncio.to_thread(upgrade, url)
        env = base_env(data_dir=str(data_dir), master_key=master_env(master), log_format="json")
        command = ["dev", "--anvil", "--anvil-port", "0", "--port", "0"]
        with processes([command], env, tmp_path) as started:
            port = listening_port(started[0])
            wait_http(f"http://127.0.0.1:{port}/healthz", started[0])
            api = f"http://127.0.0.1:{port}"
            anvil_url = await dev_anvil_url(url)
            addresses, token = await prepare(url, anvil_url, master, register_chain=False)
            headers = {"Authorization": f"Bearer {token}"}
            async with aiohttp.ClientSession(headers=headers) as http:
                await submit(http, api, addresses[:2], 150)
                await settled(url, 150)  # a backlog of ~750 events to catch up on
                for i in range(40):  # leave after a few bytes, at varying points of the read
                    async with http.get(f"{api}/v1/events/stream?after=0") as stream:
                        assert stream.status == 200
                        await stream.content.read(200 + 997 * i)
                        stream.close()  # the connection dropped mid-stream
                # Still answering, writes included: no connection kept the database locked.
                await asyncio.wait_for(submit(http, api, addresses[:1], 1), timeout=10)
                async with http.get(f"{api}/v1/transactions?limit=1") as page:
                    assert page.status == 200
        log = "\n".join(p.read_text() for p in tmp_path.glob("*.log"))
        assert "Task was destroyed" not in log
