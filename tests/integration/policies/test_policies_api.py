"""Spending policies through the real app on both databases: each rule denies with its name
and stores nothing, rolling limits hold under concurrent requests (PostgreSQL locks the
policy row; SQLite has one writer), released value lets others through, evaluate agrees
with admission, and every change is a new version (issue 21)."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import func, select, text

from chainflow.api.app import create_app
from chainflow.core.settings import Settings
from chainflow.core.types import WalletId
from chainflow.domain.policies import service as policies
from chainflow.domain.transactions import service as txs
from chainflow.domain.transactions.models import Transaction
from chainflow.domain.transactions.schemas import TxCreate
from chainflow.domain.transactions.state import TxEvent
from chainflow.domain.transactions.transitions import apply
from chainflow.infra.db.uow import unit_of_work
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.engine import SINK
from tests.support.fixtures import ApiHarness, open_api, prepare_sender
from tests.support.fixtures import tx_body as body
from tests.support.polling import eventually

OTHER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
TRANSFER = "0xa9059cbb"
SENT = 200  # concurrent requests against a limit that allows 37 (the figures)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[ApiHarness]:
    """The app, taking on all SENT requests at once (admission control would refuse past 128
    in flight: a different guard, tested in test_gate.py)."""
    roomy = settings.model_copy(update={"api_max_in_flight": 2 * SENT})
    async with open_api(create_app(roomy)) as harness:
        yield harness


@pytest.fixture
async def setup(api: ApiHarness, anvil_url: str) -> dict[str, Any]:
    sender = await prepare_sender(api, anvil_url)
    sender["policies"] = await api.key("policies")
    return sender


async def put_policy(api: ApiHarness, setup: dict[str, Any], rules: dict[str, Any]) -> Any:
    wallet_id = setup["wallet"]["id"]
    response = await api.client.put(
        f"/v1/wallets/{wallet_id}/policy", headers=setup["policies"], json=rules
    )
    assert response.status_code == 200, response.text
    return response.json()


async def stored(api: ApiHarness) -> int:
    async with unit_of_work(api.resources.sessionmaker) as session:
        return int(await session.scalar(select(func.count()).select_from(Transaction)) or 0)


async def submit(api: ApiHarness, setup: dict[str, Any], **extra: Any) -> Any:
    return await api.client.post(
        "/v1/transactions", headers=setup["write"], json=body(setup, **extra)
    )


class TestRules:
    @pytest.mark.parametrize(
        ("rules", "extra", "rule", "limit"),
        [
            ({"allowed_recipients": [{"address": OTHER}]}, {}, "allowed_recipients", None),
            (
                {"allowed_recipients": [{"address": SINK, "selectors": [TRANSFER]}]},
                {"data": "0x095ea7b3" + "00" * 64},
                "allowed_selectors",
                None,
            ),
            (
                {"allowed_recipients": [{"address": SINK, "selectors": [TRANSFER]}]},
                {},
                "allowed_selectors",
                None,
            ),
            ({"max_value_wei_per_tx": "10"}, {"value": "11"}, "max_value_wei_per_tx", "10"),
            (
                {"max_fee_per_gas_wei": "1000"},
                {"max_fee_per_gas": "1001"},
                "max_fee_per_gas_wei",
                "1000",
            ),
            (
                {"max_cost_wei": "2100000"},
                {"gas_limit": 21000, "max_fee_per_gas": "101"},
                "max_cost_wei",
                "2100000",
            ),
            ({"max_cost_wei": "2100000"}, {"max_fee_per_gas": "1"}, "max_cost_wei", "2100000"),
            (
                {"limits": [{"window_s": 3600, "max_value_wei": "10"}]},
                {"value": "11"},
                "limits",
                "10",
            ),
        ],
    )
    async def test_each_rule_denies_naming_itself_and_stores_nothing(
        self,
        api: ApiHarness,
        setup: dict[str, Any],
        rules: dict[str, Any],
        extra: dict[str, Any],
        rule: str,
        limit: str | None,
    ) -> None:
        await put_policy(api, setup, rules)
        headers = {**setup["write"], "Idempotency-Key": "once"}
        response = await api.client.post(
            "/v1/transactions", headers=headers, json=body(setup, **extra)
        )
        assert response.status_code == 403, response.text
        problem = response.json()
        assert (problem["code"], problem["rule"], problem.get("limit")) == (
            "policy_denied",
            rule,
            limit,
        )
        assert response.headers["content-type"] == "application/problem+json"
        assert await stored(api) == 0
        verdict = await api.client.post(
            f"/v1/wallets/{setup['wallet']['id']}/policy/evaluate",
            headers=setup["write"],
            json=body(setup, **extra),
        )
        assert (verdict.json()["allowed"], verdict.json()["rule"]) == (False, rule)
        # The Idempotency-Key was not used: under a policy that allows it, it stores now.
        await put_policy(api, setup, {})
        again = await api.client.post(
            "/v1/transactions", headers=headers, json=body(setup, **extra)
        )
        assert again.status_code == 202, again.text
        assert "Idempotent-Replayed" not in again.headers

    async def test_allowed_requests_pass_and_the_fee_cap_is_stored(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        await put_policy(
            api,
            setup,
            {
                "allowed_recipients": [{"address": SINK, "selectors": [TRANSFER]}],
                "max_fee_per_gas_wei": "5000000000",
                "max_value_wei_per_tx": "10",
            },
        )
        call = {"function": "transfer(address,uint256)", "args": [SINK, "1"], "value": "10"}
        verdict = await api.client.post(
            f"/v1/wallets/{setup['wallet']['id']}/policy/evaluate",
            headers=setup["write"],
            json=body(setup, **call),
        )
        assert verdict.json() == {"allowed": True, "rule": None, "detail": None}
        response = await submit(api, setup, **call)
        assert response.status_code == 202, response.text
        async with unit_of_work(api.resources.sessionmaker) as session:
            tx = await session.get(Transaction, uuid.UUID(response.json()["id"]))
            assert tx is not None
            assert tx.max_fee_per_gas_cap == 5_000_000_000

    async def test_batches_add_up_against_a_limit(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        await put_policy(api, setup, {"limits": [{"window_s": 3600, "max_value_wei": "25"}]})
        items = [body(setup, value="10") for _ in range(3)]
        response = await api.client.post(
            "/v1/transactions/batch", headers=setup["write"], json={"transactions": items}
        )
        assert response.status_code == 403, response.text
        assert (response.json()["rule"], response.json()["index"]) == ("limits", 2)
        assert await stored(api) == 0
        ok = await api.client.post(
            "/v1/transactions/batch", headers=setup["write"], json={"transactions": items[:2]}
        )
        assert ok.status_code == 202, ok.text

    async def test_a_batch_counts_once_under_two_limits_of_one_window(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        """A limit on every chain and one on this chain, both over an hour: each item of a
        batch counts once against each (it counted once per limit of its window: twice)."""
        limit = {"window_s": 3600, "max_value_wei": "25"}
        await put_policy(api, setup, {"limits": [limit, limit | {"chain_id": ANVIL_CHAIN_ID}]})
        items = [body(setup, value="10") for _ in range(2)]
        response = await api.client.post(
            "/v1/transactions/batch", headers=setup["write"], json={"transactions": items}
        )
        assert response.status_code == 202, response.text
        refused = await api.client.post(
            "/v1/transactions/batch", headers=setup["write"], json={"transactions": items[:1]}
        )
        assert refused.status_code == 403, refused.text
        assert "(20 wei admitted in the window)" in refused.json()["detail"]


class TestLockOrder:
    pytestmark = pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)

    async def test_a_policy_change_waits_for_an_admission_in_flight_without_a_deadlock(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        """An admission holds the policy row, then inserts its request (a foreign key check
        share-locks the wallet row); a PUT meanwhile holds the wallet row and waits for the
        policy row. Under load that was a deadlock: PostgreSQL aborted one, a 500 (audit)."""
        await put_policy(api, setup, {"limits": [{"window_s": 3600, "max_value_wei": "100"}]})
        wallet_id = WalletId(uuid.UUID(setup["wallet"]["id"]))
        sessionmaker = api.resources.sessionmaker
        async with unit_of_work(sessionmaker) as admission:
            await policies.read_rules(admission, wallet_id, lock=True)  # as spending.Ledger
            change = asyncio.create_task(
                api.client.put(
                    f"/v1/wallets/{wallet_id}/policy",
                    headers=setup["policies"],
                    json={"limits": [{"window_s": 3600, "max_value_wei": "50"}]},
                )
            )
            await eventually(waits(api), what="the PUT waiting for the policy row")
            submitted = await txs.submit(
                admission,
                TxCreate.model_validate(body(setup, value="1")),
                api_key_id=None,
                idempotency_key=None,
            )
            assert isinstance(submitted, txs.Created)
        response = await change
        assert response.status_code == 200, response.text
        assert response.json()["rules"]["limits"][0]["max_value_wei"] == "50"
        assert await stored(api) == 1

    async def test_batches_naming_two_wallets_in_opposite_orders_take_turns(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        """Each admission locks the policy of the wallet it counts against; a batch took them
        item by item, so one holding A and waiting for B, and another holding B and waiting
        for A, deadlocked: a 500 (audit). They are locked in wallet id order first now."""
        created = await api.client.post(
            "/v1/wallets",
            headers=setup["wallets"],
            json={"generate": True, "chain_ids": [ANVIL_CHAIN_ID]},
        )
        pair = sorted([setup["wallet"], created.json()], key=lambda w: uuid.UUID(w["id"]))
        for wallet in pair:
            response = await api.client.put(
                f"/v1/wallets/{wallet['id']}/policy",
                headers=setup["policies"],
                json={"limits": [{"window_s": 3600, "max_value_wei": "100"}]},
            )
            assert response.status_code == 200, response.text
        low, high = (WalletId(uuid.UUID(wallet["id"])) for wallet in pair)
        items = [body(setup, wallet=wallet["address"], value="1") for wallet in reversed(pair)]
        async with unit_of_work(api.resources.sessionmaker) as other_batch:
            await policies.read_rules(other_batch, low, lock=True)
            batch = asyncio.create_task(
                api.client.post(
                    "/v1/transactions/batch",
                    headers=setup["write"],
                    json={"transactions": items},  # the higher wallet first
                )
            )
            await eventually(waits(api), what="the batch waiting for a policy row")
            await policies.read_rules(other_batch, high, lock=True)
        response = await batch
        assert response.status_code == 202, response.text
        assert await stored(api) == 2


def waits(api: ApiHarness) -> Callable[[], Awaitable[bool]]:
    """Whether a statement of the test's database waits for a lock (PostgreSQL)."""

    async def check() -> bool:
        async with api.resources.sessionmaker() as observer:
            waiting = await observer.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            )
        return bool(waiting)

    return check


class TestRollingLimit:
    async def test_concurrent_requests_never_overshoot_and_released_value_returns(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        value, allowed = 1_000, 37
        await put_policy(
            api,
            setup,
            {
                "limits": [
                    {
                        "window_s": 86_400,
                        "max_value_wei": str(value * allowed),
                        "chain_id": ANVIL_CHAIN_ID,
                    }
                ]
            },
        )
        answers = await asyncio.gather(*(submit(api, setup, value=str(value)) for _ in range(SENT)))
        codes = sorted(a.status_code for a in answers)
        assert (codes.count(202), codes.count(403)) == (allowed, SENT - allowed), codes
        assert {a.json()["rule"] for a in answers if a.status_code == 403} == {"limits"}
        assert await stored(api) == allowed
        admitted = [a.json()["id"] for a in answers if a.status_code == 202]
        # 2 cancelled by their key, 3 failed before sending (the one writer of statuses).
        for tx_id in admitted[:2]:
            cancel = await api.client.post(
                f"/v1/transactions/{tx_id}/cancel", headers=setup["write"]
            )
            assert cancel.json()["status"] == "cancelled"
        async with unit_of_work(api.resources.sessionmaker) as session:
            for tx_id in admitted[2:5]:
                tx = await session.get(Transaction, uuid.UUID(tx_id))
                assert tx is not None
                apply(session, tx, TxEvent.FAILED, reason="test: failed before sending")
        more = await asyncio.gather(*(submit(api, setup, value=str(value)) for _ in range(8)))
        assert sorted(a.status_code for a in more) == [202] * 5 + [403] * 3
        evaluate = await api.client.post(
            f"/v1/wallets/{setup['wallet']['id']}/policy/evaluate",
            headers=setup["write"],
            json=body(setup, value="1"),
        )
        assert evaluate.json()["rule"] == "limits"

    async def test_a_limit_on_another_chain_does_not_count_here(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        await put_policy(
            api, setup, {"limits": [{"window_s": 60, "max_value_wei": "1", "chain_id": 1}]}
        )
        assert (await submit(api, setup, value="5")).status_code == 202


class TestVersions:
    async def test_every_put_is_a_new_version_and_old_ones_stay_readable(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        wallet_id = setup["wallet"]["id"]
        assert (
            await api.client.get(f"/v1/wallets/{wallet_id}/policy", headers=setup["write"])
        ).status_code == 404
        first = await put_policy(api, setup, {"max_value_wei_per_tx": "10"})
        second = await put_policy(api, setup, {"max_value_wei_per_tx": "20"})
        assert (first["version"], second["version"]) == (1, 2)
        current = await api.client.get(f"/v1/wallets/{wallet_id}/policy", headers=setup["write"])
        assert current.json()["rules"]["max_value_wei_per_tx"] == "20"
        old = await api.client.get(
            f"/v1/wallets/{wallet_id}/policy?version=1", headers=setup["write"]
        )
        assert old.json()["rules"]["max_value_wei_per_tx"] == "10"

    async def test_only_the_policies_scope_may_change_a_policy(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        response = await api.client.put(
            f"/v1/wallets/{setup['wallet']['id']}/policy", headers=setup["write"], json={}
        )
        assert response.status_code == 403
        assert response.json()["code"] == "insufficient_scope"
