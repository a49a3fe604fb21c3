"""GET /v1/events over HTTP on both databases: only sequenced events, filters, pages,
refusals."""

import uuid
from typing import Any

import pytest

from chainflow.core.types import ChainId, WalletId
from chainflow.domain.events import append_many, new_event, sequence_pending
from chainflow.infra.db.uow import unit_of_work
from tests.support.fixtures import ApiHarness


@pytest.fixture
async def stored(api: ApiHarness) -> dict[str, Any]:
    """Five sequenced events of two wallets and chains, and one not sequenced yet."""
    wallet_a, wallet_b = WalletId(uuid.uuid4()), WalletId(uuid.uuid4())
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
    return {"read": await api.key("read"), "a": wallet_a, "b": wallet_b}


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

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("types=transaction.*", [1, 2, 4, 5]),
            ("types=transaction.queued,wallet.*", [1, 3, 4]),
            ("types=*.low_balance", [3]),
            ("types=transaction.queue", []),
            ("chain_id=2", [3, 5]),
            ("types=transaction.*&chain_id=1", [1, 2, 4]),
        ],
    )
    async def test_filters(
        self, api: ApiHarness, stored: dict[str, Any], query: str, expected: list[int]
    ) -> None:
        assert await numbers(api, stored, query) == expected

    @pytest.mark.parametrize(
        ("query", "status", "code"),
        [
            ("types=Transaction.*", 422, "invalid_event_types"),
            ("types=transaction.%25", 422, "invalid_event_types"),
            ("types=" + ",".join(f"t{i}" for i in range(21)), 422, "invalid_event_types"),
            ("after=-1", 422, "validation_error"),
            ("cursor=abc", 422, "invalid_cursor"),
            ("limit=501", 422, "validation_error"),
            (f"wallet={uuid.uuid4()}", 404, "wallet_not_found"),
        ],
    )
    async def test_bad_filters_are_refused(
        self, api: ApiHarness, stored: dict[str, Any], query: str, status: int, code: str
    ) -> None:
        response = await api.client.get(f"/v1/events?{query}", headers=stored["read"])
        assert response.status_code == status, response.text
        assert response.json()["code"] == code

    @pytest.mark.usefixtures("stored")
    async def test_a_request_without_a_key_is_refused(self, api: ApiHarness) -> None:
        assert (await api.client.get("/v1/events")).status_code == 401
        assert (await api.client.get("/v1/events/stream")).status_code == 401
