"""Malformed pagination cursors and Last-Event-IDs over HTTP, on both databases: each is the
route's precise 422 (the code its bad cursors always had), never a 500."""

import base64
import uuid

import pytest

from tests.support.fixtures import ApiHarness

# "²" (U+00B2): str.isdigit() says True, int() raises ValueError (the audit's reproduction).
SUPERSCRIPT_TWO = "%C2%B2"
ROW_ID = uuid.UUID("0b8f4e0c-1c1e-4c53-9d0e-2f1f6f2c8a11")


def forged(created_at: str) -> str:
    """A cursor as the list routes write it (core/cursor.py), around any time text."""
    raw = f"{created_at}|{ROW_ID}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# A naive time (no offset: the database cannot order it against stored UTC times), and times
# that leave datetime's range once converted to UTC.
FORGED = {
    "naive": forged("2020-01-01T00:00:00"),
    "before_year_1_in_utc": forged("0001-01-01T00:00:00+14:00"),
    "after_year_9999_in_utc": forged("9999-12-31T23:59:59-14:00"),
}


async def list_paths(api: ApiHarness) -> list[str]:
    webhook = await api.client.post(
        "/v1/webhooks", headers=await api.key("webhooks"), json={"url": "http://127.0.0.1:9/h"}
    )
    assert webhook.status_code == 201, webhook.text
    return [
        "/v1/wallets",
        "/v1/transactions",
        "/v1/schedules",
        f"/v1/webhooks/{webhook.json()['id']}/deliveries",
    ]


class TestListCursors:
    @pytest.mark.parametrize("cursor", FORGED.values(), ids=FORGED.keys())
    async def test_a_cursor_whose_time_is_unusable_is_invalid_input(
        self, api: ApiHarness, cursor: str
    ) -> None:
        admin = await api.key("admin")
        for path in await list_paths(api):
            response = await api.client.get(f"{path}?cursor={cursor}", headers=admin)
            assert response.status_code == 422, (path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            body = response.json()
            assert (body["code"], body["detail"]) == (
                "invalid_input",
                "cursor is not one this API returned",
            ), path

    async def test_a_cursor_the_api_wrote_still_pages(self, api: ApiHarness) -> None:
        wallets = await api.key("wallets")
        for _ in range(2):
            created = await api.client.post("/v1/wallets", headers=wallets, json={"generate": True})
            assert created.status_code == 201, created.text
        first = (await api.client.get("/v1/wallets?limit=1", headers=wallets)).json()
        second = await api.client.get(
            f"/v1/wallets?limit=1&cursor={first['next_cursor']}", headers=wallets
        )
        assert second.status_code == 200, second.text
        assert [w["id"] for w in second.json()["items"]] != [w["id"] for w in first["items"]]


class TestEventCursors:
    @pytest.mark.parametrize("cursor", [SUPERSCRIPT_TWO, "%D9%A3", "1_0", "99999999999999999999"])
    async def test_a_page_cursor_of_anything_but_ascii_digits_is_invalid_cursor(
        self, api: ApiHarness, cursor: str
    ) -> None:
        response = await api.client.get(
            f"/v1/events?cursor={cursor}", headers=await api.key("read")
        )
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "invalid_cursor"

    @pytest.mark.parametrize("value", [b"\xb2", "\u0663".encode(), b"1_0", b"99999999999999999999"])
    async def test_a_last_event_id_of_anything_but_ascii_digits_is_invalid_cursor(
        self, api: ApiHarness, value: bytes
    ) -> None:
        key = (await api.key("read"))["Authorization"]
        headers = [(b"authorization", key.encode()), (b"last-event-id", value)]
        response = await api.client.get("/v1/events/stream", headers=headers)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert (body["code"], body["detail"]) == (
            "invalid_cursor",
            "Last-Event-ID must be an event's cursor (decimal digits)",
        )


class TestLaneCursors:
    # int() read "٣" (ARABIC-INDIC DIGIT THREE) as chain 3, and "1_0" as 10.
    @pytest.mark.parametrize("chain", ["\u0663", "1_0", "\u00b2"])
    async def test_a_chain_id_of_anything_but_ascii_digits_is_invalid_input(
        self, api: ApiHarness, chain: str
    ) -> None:
        raw = f"{chain}|0x000000000000000000000000000000000000dEaD".encode()
        cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        response = await api.client.get(f"/v1/lanes?cursor={cursor}", headers=await api.key("read"))
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "invalid_input"
