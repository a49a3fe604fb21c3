"""GET /v1/events over HTTP on both databases: only sequenced events, filters, pages,
refusals."""

import asyncio
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
import uvicorn

from chainflow.api.app import create_app
from chainflow.core.clock import utcnow
from chainflow.core.settings import Settings
from chainflow.core.types import ChainId, WalletId
from chainflow.domain.apikeys.service import KeyLimits, create_api_key, revoke_api_key
from chainflow.domain.events import append_many, new_event, sequence_pending
from chainflow.domain.master_key import foreign_key_ids
from chainflow.domain.wallets.service import import_wallet
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.local import generate_private_key
from tests.support.fixtures import ApiHarness, open_api
from tests.support.polling import eventually


@pytest.fixture
async def stored(api: ApiHarness) -> dict[str, Any]:
    """Five sequenced events of two wallets and chains, and one not sequenced yet."""
    async with unit_of_work(api.resources.sessionmaker) as session:
        wallet = await import_wallet(
            session,
            generate_private_key(),
            master=api.resources.master_key,
            sealed_rows=foreign_key_ids,
        )
    wallet_a, wallet_b = WalletId(wallet.id), WalletId(uuid.uuid4())
    async with unit_of_work(api.resources.sessionmaker) as session:
        await append_many(
            session,
            [
                new_event(
                    "transaction.queued", data={"n": 1}, wallet_id=wallet_a, chain_id=ChainId(1)
                ),
                new_event(
                    "transaction.signed", data={"n": 2}, wallet_id=wallet_a, chain_id=ChainId(1)
                ),
                new_event(
                    "wallet.low_balance", data={"n": 3}, wallet_id=wallet_b, chain_id=ChainId(2)
                ),
                new_event(
                    "transaction.queued", data={"n": 4}, wallet_id=wallet_b, chain_id=ChainId(1)
                ),
                new_event(
                    "transaction.confirmed", data={"n": 5}, wallet_id=wallet_a, chain_id=ChainId(2)
                ),
            ],
        )
    async with unit_of_work(api.resources.sessionmaker) as session:
        await sequence_pending(session)
    async with unit_of_work(api.resources.sessionmaker) as session:
        await append_many(session, [new_event("transaction.queued", data={"n": 6})])
    return {"read": await api.key("read"), "a": wallet_a, "address": wallet.address}


async def numbers(api: ApiHarness, stored: dict[str, Any], query: str) -> list[int]:
    response = await api.client.get(f"/v1/events?{query}", headers=stored["read"])
    assert response.status_code == 200, response.text
    return [item["data"]["n"] for item in response.json()["items"]]


class TestListEvents:
    async def test_only_sequenced_events_in_cursor_order(
        self, api: ApiHarness, stored: dict[str, Any]
    ) -> None:
        response = await api.client.get("/v1/events", headers=stored["read"])
        body = response.json()
        assert [item["cursor"] for item in body["items"]] == [1, 2, 3, 4, 5]
        assert body["next_cursor"] is None
        first = body["items"][0]
        assert set(first) == {"id", "type", "created_at", "cursor", "data"}
        assert first["id"].startswith("evt_")

    async def test_pages_follow_next_cursor_and_after(
        self, api: ApiHarness, stored: dict[str, Any]
    ) -> None:
        page = (await api.client.get("/v1/events?limit=2", headers=stored["read"])).json()
        assert page["next_cursor"] == "2"
        assert await numbers(api, stored, f"limit=2&cursor={page['next_cursor']}") == [3, 4]
        assert await numbers(api, stored, "after=4") == [5]

    async def test_filters(self, api: ApiHarness, stored: dict[str, Any]) -> None:
        cases = [
            ("types=transaction.*", [1, 2, 4, 5]),
            ("types=transaction.queued,wallet.*", [1, 3, 4]),
            ("types=*.low_balance", [3]),
            ("types=transaction.queue", []),
            ("chain_id=2", [3, 5]),
            ("types=transaction.*&chain_id=1", [1, 2, 4]),
            (f"wallet={stored['a']}", [1, 2, 5]),
            (f"wallet={stored['address']}&types=transaction.confirmed", [5]),
        ]
        for query, expected in cases:
            assert await numbers(api, stored, query) == expected, query

    async def test_bad_filters_are_refused(self, api: ApiHarness, stored: dict[str, Any]) -> None:
        cases = [
            ("types=Transaction.*", 422, "invalid_event_types"),
            ("types=transaction.%25", 422, "invalid_event_types"),
            ("types=" + ",".join(f"t{i}" for i in range(21)), 422, "invalid_event_types"),
            ("after=-1", 422, "validation_error"),
            ("cursor=abc", 422, "invalid_cursor"),
            ("limit=501", 422, "validation_error"),
            (f"wallet={uuid.uuid4()}", 404, "wallet_not_found"),
        ]
        for query, status, code in cases:
            response = await api.client.get(f"/v1/events?{query}", headers=stored["read"])
            assert (response.status_code, response.json()["code"]) == (status, code), query

    @pytest.mark.usefixtures("stored")
    async def test_a_request_without_a_key_is_refused(self, api: ApiHarness) -> None:
        assert (await api.client.get("/v1/events")).status_code == 401
        assert (await api.client.get("/v1/events/stream")).status_code == 401


async def limited_key(api: ApiHarness, limits: KeyLimits) -> dict[str, str]:
    async with unit_of_work(api.resources.sessionmaker) as session:
        _, token = await create_api_key(session, ["read"], limits=limits)
    return {"Authorization": f"Bearer {token}"}


async def limited_numbers(api: ApiHarness, key: dict[str, str], query: str = "") -> list[int]:
    response = await api.client.get(f"/v1/events?{query}", headers=key)
    assert response.status_code == 200, response.text
    return [item["data"]["n"] for item in response.json()["items"]]


@asynccontextmanager
async def serving(api: ApiHarness) -> AsyncIterator[str]:
    """The app on a real socket (a stream is read as it comes, which ASGITransport cannot)."""
    sock = socket.socket()  # bound to port 0 here: no other process can take it before
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(api.app, lifespan="off", log_level="error")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))

    async def started() -> bool:
        return server.started

    try:
        await eventually(started, timeout_s=10)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        sock.close()


class TestRestrictedKeys:
    """A key limited to wallets or chains reads only their events (it was refused 403 before),
    and is refused a filter outside them."""

    async def test_each_key_reads_only_its_wallets_and_chains_events(
        self, api: ApiHarness, stored: dict[str, Any]
    ) -> None:
        a = uuid.UUID(str(stored["a"]))
        cases = [
            (KeyLimits(wallet_ids=[a]), "", [1, 2, 5]),
            (KeyLimits(wallet_ids=[a]), "chain_id=2", [5]),
            (KeyLimits(wallet_ids=[a]), f"wallet={stored['address']}", [1, 2, 5]),
            (KeyLimits(chain_ids=[1]), "", [1, 2, 4]),
            (KeyLimits(chain_ids=[1]), "types=transaction.queued", [1, 4]),
            (KeyLimits(wallet_ids=[a], chain_ids=[1]), "", [1, 2]),
            (KeyLimits(chain_ids=[3]), "", []),
        ]
        for limits, query, expected in cases:
            key = await limited_key(api, limits)
            assert await limited_numbers(api, key, query) == expected, (limits, query)

    async def test_a_filter_outside_the_keys_reach_is_refused(
        self, api: ApiHarness, stored: dict[str, Any]
    ) -> None:
        a = uuid.UUID(str(stored["a"]))
        by_wallet = await limited_key(api, KeyLimits(wallet_ids=[a]))
        by_chain = await limited_key(api, KeyLimits(chain_ids=[1]))
        cases = [
            (by_wallet, f"wallet={uuid.uuid4()}"),  # not there: refused all the same
            (by_chain, "chain_id=2"),
        ]
        for key, query in cases:
            for path in ("/v1/events", "/v1/events/stream"):
                response = await api.client.get(f"{path}?{query}", headers=key)
                assert response.status_code == 403, (path, query, response.text)
                assert response.json()["code"] == "key_restricted"

    async def test_the_stream_sends_a_restricted_key_only_its_events(
        self, api: ApiHarness, stored: dict[str, Any]
    ) -> None:
        a = uuid.UUID(str(stored["a"]))
        key = await limited_key(api, KeyLimits(wallet_ids=[a]))
        async with open_stream(api, key, "?after=0") as stream:
            # its last one: events 3 and 4 were passed over before it
            await eventually(lambda: stream.delivered(5))
        assert stream.numbers() == [1, 2, 5]


CACHE_S = 1.0  # the API's key cache in the tests below (the default is 5 s)


@pytest.fixture
async def cached_api(settings: Settings) -> AsyncIterator[ApiHarness]:
    async with open_api(
        create_app(settings.model_copy(update={"api_key_cache_s": CACHE_S}))
    ) as api:
        yield api


async def publish(api: ApiHarness, n: int) -> None:
    async with unit_of_work(api.resources.sessionmaker) as session:
        await append_many(session, [new_event("transaction.queued", data={"n": n})])
    async with unit_of_work(api.resources.sessionmaker) as session:
        await sequence_pending(session)


@dataclass
class OpenStream:
    """A stream read line by line in a task; `task` ends when the server closes it."""

    lines: list[str]
    task: "asyncio.Task[None]"

    def numbers(self) -> list[int]:
        return [int(n) for line in self.lines for n in re.findall(r'^data: .*"n":(\d+)', line)]

    async def delivered(self, n: int) -> bool:
        return n in self.numbers()


@asynccontextmanager
async def open_stream(
    api: ApiHarness, key: dict[str, str], query: str = ""
) -> AsyncIterator[OpenStream]:
    """The app on a real socket, and a stream of it open with `key` (its first line read)."""
    async with (
        serving(api) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
        client.stream("GET", f"/v1/events/stream{query}", headers=key) as response,
    ):
        assert response.status_code == 200
        lines: list[str] = []

        async def read() -> None:
            async for line in response.aiter_lines():
                lines.append(line)

        stream = OpenStream(lines, asyncio.create_task(read()))
        try:

            async def opened() -> bool:
                return ": stream open" in lines

            await eventually(opened)
            yield stream
        finally:
            stream.task.cancel()
            await asyncio.gather(stream.task, return_exceptions=True)


class TestStreamKeyEnds:
    """An open stream ends once its key is revoked (within the key cache's time and one
    check) or at its expiry instant, and sends nothing after (it went on before)."""

    async def test_a_revoked_keys_stream_ends(self, cached_api: ApiHarness) -> None:
        api = cached_api
        async with unit_of_work(api.resources.sessionmaker) as session:
            row, token = await create_api_key(session, ["read"])
        key = {"Authorization": f"Bearer {token}"}
        async with open_stream(api, key) as stream:
            await publish(api, 1)
            await eventually(lambda: stream.delivered(1))
            async with unit_of_work(api.resources.sessionmaker) as session:
                await revoke_api_key(session, row.id)
            revoked_at = time.monotonic()

            async def refused() -> bool:
                return (await api.client.get("/v1/me", headers=key)).status_code == 401

            await eventually(refused, timeout_s=CACHE_S + 3)  # the API has seen the revocation
            await publish(api, 2)
            await asyncio.wait_for(stream.task, timeout=CACHE_S + 3)
            ended_in = time.monotonic() - revoked_at
            await publish(api, 3)
        assert stream.numbers() == [1], stream.lines
        assert ": closed: invalid_api_key" in stream.lines
        assert ended_in <= CACHE_S + 2  # the cache, one check interval (1 s), room for load

    async def test_an_expired_keys_stream_ends_at_the_expiry(self, cached_api: ApiHarness) -> None:
        api = cached_api
        expires_at = utcnow() + timedelta(seconds=2)
        async with unit_of_work(api.resources.sessionmaker) as session:
            _, token = await create_api_key(
                session, ["read"], limits=KeyLimits(expires_at=expires_at)
            )
        async with open_stream(api, {"Authorization": f"Bearer {token}"}) as stream:
            await publish(api, 1)
            await eventually(lambda: stream.delivered(1))
            await asyncio.wait_for(stream.task, timeout=10)
            ended_late_s = (utcnow() - expires_at).total_seconds()
            await publish(api, 2)
        assert stream.numbers() == [1], stream.lines
        assert ": closed: api_key_expired" in stream.lines
        assert 0 <= ended_late_s <= 0.5
