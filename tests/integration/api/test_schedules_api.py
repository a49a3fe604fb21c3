"""Schedule routes over HTTP on both databases: create, read, list, pause/resume, cancel,
runs; bad input is a precise 422 and stores nothing."""

import uuid
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from chainflow.core.addresses import checksum_address
from chainflow.domain.apikeys.service import KeyLimits, create_api_key, revoke_api_key
from chainflow.domain.schedules.models import Schedule
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.rpc.client import RpcClient
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.engine import ONCE_ONLY_INIT_CODE, SINK, deploy
from tests.support.fixtures import ApiHarness, prepare_sender


@pytest.fixture
async def setup(api: ApiHarness, anvil_url: str) -> dict[str, Any]:
    sender = await prepare_sender(api, anvil_url)
    sender["schedules"] = await api.key("schedules", "transactions:write")
    sender["schedules_only"] = await api.key("schedules")
    return sender


def _body(setup: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "wallet": setup["wallet"]["id"],
        "chain_id": ANVIL_CHAIN_ID,
        "trigger": {"cron": "30 2 * * *", "timezone": "Europe/Berlin"},
        "action": {"type": "transaction", "to": SINK, "value": "5"},
        **fields,
    }


async def _stored(api: ApiHarness) -> int:
    async with unit_of_work(api.resources.sessionmaker) as session:
        return int(await session.scalar(select(func.count()).select_from(Schedule)) or 0)


class TestLifecycle:
    async def test_create_read_pause_resume_cancel(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        headers = setup["schedules"]
        created = await api.client.post("/v1/schedules", headers=headers, json=_body(setup))
        assert created.status_code == 201, created.text
        row = created.json()
        assert (row["status"], row["runs"], row["spent"]) == ("active", 0, "0")
        assert row["next_run_at"] is not None
        assert row["trigger"] == {"cron": "30 2 * * *", "timezone": "Europe/Berlin"}
        url = f"/v1/schedules/{row['id']}"
        assert (await api.client.get(url, headers=headers)).json() == row
        paused = await api.client.patch(url, headers=headers, json={"status": "paused"})
        assert paused.json()["status"] == "paused"
        resumed = await api.client.patch(url, headers=headers, json={"status": "active"})
        assert resumed.json()["status"] == "active"
        listed = await api.client.get("/v1/schedules", headers=headers, params={"limit": 1})
        assert [item["id"] for item in listed.json()["items"]] == [row["id"]]
        cancelled = await api.client.delete(url, headers=headers)
        assert (cancelled.json()["status"], cancelled.json()["next_run_at"]) == ("cancelled", None)
        again = await api.client.patch(url, headers=headers, json={"status": "active"})
        assert (again.status_code, again.json()["code"]) == (409, "schedule_finished")
        runs = await api.client.get(f"{url}/runs", headers=headers)
        assert runs.json() == {"items": [], "next_cursor": None}

    async def test_the_scope_is_required(self, api: ApiHarness, setup: dict[str, Any]) -> None:
        response = await api.client.post("/v1/schedules", headers=setup["write"], json=_body(setup))
        assert (response.status_code, response.json()["code"]) == (403, "insufficient_scope")
        assert await _stored(api) == 0

    async def test_creating_one_needs_transactions_write_too(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        """Its runs send transactions as the creating key: `schedules` alone moves no money
        (audit: a `schedules`-only key's schedule sent a transfer), but still manages them."""
        only = setup["schedules_only"]
        response = await api.client.post("/v1/schedules", headers=only, json=_body(setup))
        assert (response.status_code, response.json()["code"]) == (403, "insufficient_scope")
        assert "'transactions:write'" in response.json()["detail"]
        assert await _stored(api) == 0
        created = await api.client.post(
            "/v1/schedules", headers=setup["schedules"], json=_body(setup)
        )
        url = f"/v1/schedules/{created.json()['id']}"
        paused = await api.client.patch(url, headers=only, json={"status": "paused"})
        assert paused.json()["status"] == "paused"
        listed = await api.client.get("/v1/schedules", headers=only)
        assert [item["id"] for item in listed.json()["items"]] == [created.json()["id"]]


class TestOwnerKey:
    async def test_resuming_under_a_revoked_owner_key_is_a_409_and_changes_nothing(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        """Its next run would only pause it again (README "Owner key"): refused, with neither
        the key's id nor its revocation time (another `schedules` key reads this)."""
        async with unit_of_work(api.resources.sessionmaker) as session:
            owner, token = await create_api_key(session, ["schedules", "transactions:write"])
        created = await api.client.post(
            "/v1/schedules", headers={"Authorization": f"Bearer {token}"}, json=_body(setup)
        )
        url = f"/v1/schedules/{created.json()['id']}"
        other = setup["schedules"]
        paused = await api.client.patch(url, headers=other, json={"status": "paused"})
        assert paused.status_code == 200, paused.text
        async with unit_of_work(api.resources.sessionmaker) as session:
            await revoke_api_key(session, owner.id)
        refused = await api.client.patch(url, headers=other, json={"status": "active"})
        assert refused.status_code == 409
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["code"] == "schedule_owner_key_inactive"
        assert problem["detail"] == (
            f"schedule {created.json()['id']} cannot be resumed: its owner API key is revoked; "
            "create a new schedule under a live key"
        )
        assert str(owner.id) not in refused.text
        assert (await api.client.get(url, headers=other)).json() == paused.json()

    async def test_resuming_after_the_actions_valid_until_is_a_409_and_changes_nothing(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        """Every run would expire unsigned (review: the resumed schedule stayed active)."""
        headers = setup["schedules"]
        action = {
            "type": "transaction",
            "to": SINK,
            "value": "5",
            "valid_until": "2099-01-01T00:00:00Z",
        }
        created = await api.client.post(
            "/v1/schedules", headers=headers, json=_body(setup, action=action)
        )
        assert created.status_code == 201, created.text
        url = f"/v1/schedules/{created.json()['id']}"
        paused = await api.client.patch(url, headers=headers, json={"status": "paused"})
        assert paused.status_code == 200, paused.text
        async with unit_of_work(api.resources.sessionmaker) as session:  # time passes
            row = await session.get(Schedule, uuid.UUID(created.json()["id"]))
            assert row is not None
            row.action = row.action | {"valid_until": "2001-01-01T00:00:00Z"}
        refused = await api.client.patch(url, headers=headers, json={"status": "active"})
        assert refused.status_code == 409
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["code"] == "schedule_action_expired"
        assert problem["detail"].startswith(
            f"schedule {created.json()['id']} cannot be resumed: its action.valid_until "
            "2001-01-01T00:00:00+00:00 is not after its next run "
        )
        after = (await api.client.get(url, headers=headers)).json()
        assert after | {"action": None} == paused.json() | {"action": None}

    async def test_a_key_limited_to_a_wallet_cannot_create_a_schedule(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        """A `schedules` key limited to wallet A and a schedule of wallet B: refused (schedule
        routes refuse any restricted key: README "Restricted API keys")."""
        async with unit_of_work(api.resources.sessionmaker) as session:
            limits = KeyLimits(wallet_ids=[uuid.uuid4()])
            _, token = await create_api_key(session, ["schedules"], limits=limits)
        response = await api.client.post(
            "/v1/schedules", headers={"Authorization": f"Bearer {token}"}, json=_body(setup)
        )
        assert (response.status_code, response.json()["code"]) == (403, "key_restricted")
        assert await _stored(api) == 0


# Bad input and its precise code; all checked on one API per database (a setup costs ~1 s).
REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"trigger": {"cron": "99 * * * *"}}, "invalid_trigger"),
    ({"trigger": {"cron": "0 9 * * *", "timezone": "Europe/Nowhere"}}, "invalid_trigger"),
    ({"trigger": {"interval_s": 0}}, "validation_error"),
    ({"trigger": {"interval_s": 5}}, "schedule_interval_too_short"),
    ({"trigger": {"at": "2001-01-01T00:00:00Z"}}, "invalid_schedule"),
    ({"trigger": {"interval_s": 60, "cron": "* * * * *"}}, "invalid_trigger"),
    ({"chain_id": 999}, "unknown_chain"),
    ({"wallet": "0x" + "11" * 20}, "unknown_wallet"),
    ({"misfire": "burst"}, "validation_error"),
    ({"max_runs": 0}, "validation_error"),
    ({"action": {"type": "transaction", "to": "0x12"}}, "validation_error"),
    ({"action": {"type": "transaction", "to": SINK, "wallet": SINK}}, "validation_error"),
    (
        {
            "action": {
                "type": "transaction",
                "to": SINK,
                "function": "f(uint256)",
                "args": [],
            }
        },
        "invalid_function_call",
    ),
    ({"action": {"type": "mystery"}}, "validation_error"),
    ({"trigger": {"cron": "0 0 30 2 *"}}, "invalid_schedule"),  # never occurs
    ({"trigger": {"at": "9999-12-31T23:00:00-02:00"}}, "validation_error"),
    # long past: its first pass would have stepped through every minute since 2000 (audit)
    ({"trigger": {"cron": "* * * * *"}, "start_at": "2000-01-01T00:00:00Z"}, "invalid_schedule"),
    # every run's request would expire unsigned (audit)
    (
        {"action": {"type": "transaction", "to": SINK, "valid_until": "2001-01-01T00:00:00Z"}},
        "invalid_schedule",
    ),
]


class TestRefused:
    async def test_bad_input_is_a_precise_422_and_nothing_is_stored(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        got = []
        for fields, _code in REFUSED:
            response = await api.client.post(
                "/v1/schedules", headers=setup["schedules"], json=_body(setup, **fields)
            )
            assert response.headers["content-type"] == "application/problem+json"
            got.append((response.status_code, response.json()["code"]))
        assert got == [(422, code) for _fields, code in REFUSED]
        assert await _stored(api) == 0

    async def test_a_start_at_long_past_is_refused_with_its_bound(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        fields = {"trigger": {"cron": "* * * * *"}, "start_at": "2000-01-01T00:00:00Z"}
        response = await api.client.post(
            "/v1/schedules", headers=setup["schedules"], json=_body(setup, **fields)
        )
        assert (response.status_code, response.json()["code"]) == (422, "invalid_schedule")
        assert response.json()["detail"] == (
            "start_at 2000-01-01T00:00:00+00:00 is more than 1 day in the past; give a later "
            "start_at, or none to start now"
        )
        assert await _stored(api) == 0

    async def test_a_wallet_not_enabled_on_the_chain_is_refused(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        wallet_url = f"/v1/wallets/{setup['wallet']['id']}/chains/{ANVIL_CHAIN_ID}"
        disabled = await api.client.delete(wallet_url, headers=setup["wallets"])
        assert disabled.status_code == 200, disabled.text
        response = await api.client.post(
            "/v1/schedules", headers=setup["schedules"], json=_body(setup)
        )
        assert (response.status_code, response.json()["code"]) == (
            422,
            "wallet_not_enabled_on_chain",
        )
        assert await _stored(api) == 0

    async def test_a_dca_router_without_code_is_refused(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        action = {
            "type": "dca_swap",
            "router": "0x" + "22" * 20,
            "token_in": "native",
            "token_out": "0x" + "33" * 20,
            "amount_in": "1000",
            "slippage_bps": 50,
            "deadline_s": 60,
        }
        response = await api.client.post(
            "/v1/schedules", headers=setup["schedules"], json=_body(setup, action=action)
        )
        assert (response.status_code, response.json()["code"]) == (422, "not_a_contract")
        assert "router" in response.json()["detail"]
        assert await _stored(api) == 0

    async def test_dca_with_contracts_is_created_and_an_unbounded_erc20_allowance_refused(
        self, api: ApiHarness, setup: dict[str, Any], anvil_url: str
    ) -> None:
        async with aiohttp.ClientSession() as http:
            contract = checksum_address(
                await deploy(RpcClient(http, anvil_url), ONCE_ONLY_INIT_CODE)
            )
        action = {
            "type": "dca_swap",
            "router": contract,
            "token_in": contract,
            "token_out": "native",
            "amount_in": "1000",
            "slippage_bps": 50,
            "deadline_s": 60,
        }
        refused = await api.client.post(
            "/v1/schedules", headers=setup["schedules"], json=_body(setup, action=action)
        )
        assert (refused.status_code, refused.json()["code"]) == (422, "invalid_schedule")
        assert "budget or max_runs" in refused.json()["detail"]
        # an allowance of amount_in x max_runs past 2^256 - 1: named by the user's fields
        huge = {**action, "amount_in": str(2**255)}
        refused = await api.client.post(
            "/v1/schedules", headers=setup["schedules"], json=_body(setup, action=huge, max_runs=2)
        )
        assert (refused.status_code, refused.json()["code"]) == (422, "invalid_schedule")
        assert refused.json()["detail"] == (
            "action.amount_in x max_runs (max_runs 2) is over 2^256 - 1, the largest ERC-20 "
            'allowance; give a budget, a smaller amount_in or max_runs, or approve: "unlimited"'
        )
        assert await _stored(api) == 0
        created = await api.client.post(
            "/v1/schedules",
            headers=setup["schedules"],
            json=_body(setup, action=action, max_runs=3),
        )
        assert created.status_code == 201, created.text
        approval = created.json()["approval_transaction_id"]
        tx = await api.client.get(f"/v1/transactions/{approval}", headers=setup["write"])
        # approve(router, amount_in x max_runs) on token_in, queued before any swap
        assert (tx.json()["to"], tx.json()["status"]) == (contract, "queued")
        assert tx.json()["data"] == (
            "0x095ea7b3" + contract[2:].lower().rjust(64, "0") + hex(3000)[2:].rjust(64, "0")
        )
