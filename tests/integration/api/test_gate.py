"""The edge in front of the app (issue 14), through the real app: a body is read only for a
valid key, within a size limit per route and a deadline, holding no admission slot; its JSON
nesting is bounded; refusals under overload wait on nothing."""

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from chainflow.api.app import create_app
from chainflow.core.jsondepth import MAX_JSON_DEPTH
from chainflow.core.settings import Settings
from chainflow.infra.db.uow import writer_lock
from tests.support.fixtures import ApiHarness, open_api
from tests.support.polling import eventually

LIMITS = {
    "api_max_body_bytes": 2048,
    "api_max_tx_body_bytes": 4096,
    "api_max_batch_body_bytes": 8192,
}
PROBLEM_JSON = "application/problem+json"


class Upload:
    """A body the test sends chunk by chunk; it sees how much the server pulled, and can
    hold the rest back."""

    def __init__(self, chunks: Iterable[bytes], *, hold_after: int | None = None) -> None:
        self.chunks = list(chunks)
        self.hold_after = hold_after
        self.pulled = 0
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if index == self.hold_after:
                self.holding.set()
                await self.release.wait()
            self.pulled += 1
            yield chunk


@asynccontextmanager
async def edge_api(settings: Settings, **overrides: Any) -> AsyncIterator[ApiHarness]:
    async with open_api(create_app(settings.model_copy(update=LIMITS | overrides))) as harness:
        yield harness


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[ApiHarness]:
    async with edge_api(settings) as harness:
        yield harness


def problem_code(response: httpx.Response) -> tuple[int, str]:
    assert response.headers["content-type"] == PROBLEM_JSON, response.text
    return response.status_code, response.json()["code"]


class TestAuthenticationBeforeTheBody:
    @pytest.mark.parametrize("authorization", [None, "Bearer cf_000000000000_wrong", "Basic x"])
    async def test_a_body_without_a_valid_key_is_401_and_never_read(
        self, api: ApiHarness, authorization: str | None
    ) -> None:
        upload = Upload([b'{"generate": ', b"true}"])
        headers = {"Content-Type": "application/json"}
        if authorization:
            headers["Authorization"] = authorization
        response = await api.client.post("/v1/wallets", content=upload, headers=headers)
        assert problem_code(response) == (401, "invalid_api_key")
        assert upload.pulled == 0

    async def test_a_valid_key_is_authenticated_once_and_its_scope_still_checked(
        self, api: ApiHarness
    ) -> None:
        read = await api.key("read")
        response = await api.client.post("/v1/wallets", headers=read, json={"generate": True})
        assert problem_code(response) == (403, "insufficient_scope")
        wallets = await api.key("wallets")
        response = await api.client.post("/v1/wallets", headers=wallets, json={"generate": True})
        assert response.status_code == 201


class TestBodySize:
    async def test_a_declared_length_over_the_limit_is_413_and_never_read(
        self, api: ApiHarness
    ) -> None:
        upload = Upload([b"x" * 1024] * 3)
        headers = await api.key("admin") | {"Content-Length": str(3 * 1024)}
        response = await api.client.post("/v1/wallets", content=upload, headers=headers)
        assert problem_code(response) == (413, "payload_too_large")
        assert response.headers["connection"] == "close"
        assert upload.pulled == 0

    async def test_a_chunked_body_is_cut_off_once_past_the_limit(self, api: ApiHarness) -> None:
        upload = Upload([b"x" * 1024] * 100)  # no Content-Length: counted as it arrives
        response = await api.client.post(
            "/v1/wallets", content=upload, headers=await api.key("admin")
        )
        assert problem_code(response) == (413, "payload_too_large")
        assert upload.pulled == 3

    async def test_each_route_has_its_own_limit(self, api: ApiHarness) -> None:
        admin = await api.key("admin")
        padded = {
            "chain_id": 31337,
            "wallet": "w",
            "to": "0x" + "11" * 20,
            "data": "0x" + "ab" * 1500,
        }
        for path, body, refused in [
            ("/v1/wallets", {"label": "x" * 3000, "generate": True}, True),
            ("/v1/transactions", padded, False),
            ("/v1/transactions", padded | {"data": "0x" + "ab" * 2100}, True),
            ("/v1/transactions/batch", {"transactions": [padded] * 2}, False),
            ("/v1/transactions/batch", {"transactions": [padded] * 3}, True),
        ]:
            response = await api.client.post(path, headers=admin, json=body)
            assert (response.status_code == 413) is refused, (path, response.text)


class TestBodyDeadline:
    async def test_a_body_that_does_not_arrive_in_time_is_408(self, settings: Settings) -> None:
        async with edge_api(settings, api_body_timeout_s=0.2) as api:
            upload = Upload([b'{"generate": ', b"true}"], hold_after=1)
            headers = await api.key("admin")
            response = await api.client.post("/v1/wallets", content=upload, headers=headers)
            assert problem_code(response) == (408, "request_timeout")
            upload.release.set()

    async def test_a_slow_sender_holds_no_admission_slot(self, settings: Settings) -> None:
        async with edge_api(settings, api_max_in_flight=1) as api:
            headers = await api.key("admin") | {"Content-Type": "application/json"}
            upload = Upload([b'{"generate": ', b"true}"], hold_after=1)
            slow = asyncio.create_task(
                api.client.post("/v1/wallets", content=upload, headers=headers)
            )
            await upload.holding.wait()
            # Before issue 14 the trickling body held the only slot: this was a 503.
            assert (await api.client.get("/v1/chains", headers=headers)).status_code == 200
            upload.release.set()
            assert (await slow).status_code == 201


class TestJsonDepth:
    async def test_a_body_nested_past_the_limit_is_a_422_problem(self, api: ApiHarness) -> None:
        admin = await api.key("admin") | {"Content-Type": "application/json"}
        deep = "[" * 1000 + "]" * 1000
        response = await api.client.post("/v1/wallets", headers=admin, content=deep)
        assert problem_code(response) == (422, "json_too_deep")
        at_limit = (
            '{"generate": true, "label": '
            + "[" * (MAX_JSON_DEPTH - 1)
            + "]" * (MAX_JSON_DEPTH - 1)
            + "}"
        )
        response = await api.client.post("/v1/wallets", headers=admin, content=at_limit)
        assert problem_code(response) == (422, "validation_error")  # parsed, then refused


def held_database(api: ApiHarness, dialect: str) -> AbstractAsyncContextManager[object]:
    """Hold what every read of the wallets table waits for."""
    if dialect == "sqlite":
        return writer_lock(api.resources.sessionmaker)  # every unit of work queues on it
    return _locked_wallets(api)


@asynccontextmanager
async def _locked_wallets(api: ApiHarness) -> AsyncIterator[object]:
    async with api.resources.engine.connect() as connection, connection.begin():
        await connection.execute(text("LOCK TABLE wallets IN ACCESS EXCLUSIVE MODE"))
        yield connection


class TestRefusals:
    async def test_refusals_wait_on_nothing_while_every_slot_waits_on_the_database(
        self, settings: Settings, dialect: str
    ) -> None:
        async with edge_api(settings, api_max_in_flight=2) as api:
            cached, fresh = await api.key("admin"), await api.key("admin")
            assert (await api.client.get("/v1/chains", headers=cached)).status_code == 200
            async with held_database(api, dialect):
                stuck = [
                    asyncio.create_task(api.client.get("/v1/wallets?limit=1", headers=cached))
                    for _ in range(2)  # a slot each (a default page of 100 rows takes 5)
                ]

                async def refused() -> bool:  # a route that reads no database
                    return (await api.client.get("/openapi.json")).status_code == 503

                await eventually(refused)  # both slots now wait on the held database
                for response in [
                    await api.client.get("/v1/wallets", headers=fresh),  # key not yet cached
                    await api.client.post("/v1/wallets", headers=fresh, json={"generate": True}),
                    await api.client.post("/v1/wallets", json={"generate": True}),  # no key
                ]:
                    assert problem_code(response) == (503, "overloaded")
                assert not any(task.done() for task in stuck)
            assert [(await task).status_code for task in stuck] == [200, 200]


class TestSlotsByCost:
    async def test_a_long_list_takes_slots_by_the_rows_it_asks_for(
        self, settings: Settings, dialect: str
    ) -> None:
        # 128 admitted lists of 500 rows were ~10 s of CPU queued before a refusal could be
        # sent (issue 14): a list takes a slot per 20 rows, so few long lists fill the process.
        async with edge_api(settings, api_max_in_flight=30) as api:
            admin = await api.key("admin")
            assert (await api.client.get("/v1/chains", headers=admin)).status_code == 200
            async with held_database(api, dialect):
                stuck = asyncio.create_task(
                    api.client.get("/v1/wallets?limit=500", headers=admin)  # 25 of 30 slots
                )

                async def full() -> bool:
                    listed = await api.client.get("/v1/wallets?limit=200", headers=admin)
                    return problem_code(listed) == (503, "overloaded")  # 10 more: refused

                await asyncio.wait_for(eventually(full), timeout=10)
                assert (await api.client.get("/openapi.json")).status_code == 200  # 1 fits
                assert not stuck.done()
            assert (await stuck).status_code == 200
