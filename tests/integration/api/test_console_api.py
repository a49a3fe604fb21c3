"""The reads the console needs, over HTTP on both databases (issue 22): /v1/me, counts by
status, lanes, chains' heads and endpoint health, list by hash / Idempotency-Key, newest first,
a transaction's webhook deliveries, a schedule's runs newest first, and the console's static
files with their Content-Security-Policy."""

import uuid
from datetime import timedelta
from typing import Any

import pytest

from chainflow.core.clock import utcnow
from chainflow.domain.apikeys.service import KeyLimits, create_api_key
from chainflow.domain.chains.models import RpcEndpoint
from chainflow.domain.events import sequence_pending
from chainflow.domain.schedules.models import RunStatus, ScheduleRun
from chainflow.domain.transactions.models import TxAttempt
from chainflow.domain.transactions.state import AttemptKind, AttemptStatus
from chainflow.domain.webhooks.delivery import fan_out
from chainflow.infra.db.uow import unit_of_work
from tests.support.fixtures import ApiHarness, prepare_sender
from tests.support.fixtures import tx_body as body
from tests.support.processes import refusing_port


@pytest.fixture
async def setup(api: ApiHarness, anvil_url: str) -> dict[str, Any]:
    sender = await prepare_sender(api, anvil_url)
    sender["read"] = await api.key("read")
    return sender


async def submit(api: ApiHarness, setup: dict[str, Any], key: str | None = None) -> str:
    headers = setup["write"] | ({"Idempotency-Key": key} if key else {})
    response = await api.client.post("/v1/transactions", headers=headers, json=body(setup))
    assert response.status_code == 202, response.text
    tx_id: str = response.json()["id"]
    return tx_id


class TestMe:
    async def test_names_the_scopes_and_never_the_secret(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        response = await api.client.get("/v1/me", headers=setup["read"])
        assert response.status_code == 200
        me = response.json()
        assert me["scopes"] == ["read"]
        assert {"id", "name", "prefix", "scopes", "created_at"} <= set(me)
        token = setup["read"]["Authorization"].removeprefix("Bearer ")
        assert token.split("_", 2)[2] not in response.text

    async def test_a_wrong_key_is_401(self, api: ApiHarness) -> None:
        response = await api.client.get("/v1/me", headers={"Authorization": "Bearer cf_x_y"})
        assert (response.status_code, response.json()["code"]) == (401, "invalid_api_key")


class TestCounts:
    async def test_counts_every_status_of_the_window(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        ids = [await submit(api, setup) for _ in range(3)]
        await api.client.post(f"/v1/transactions/{ids[0]}/cancel", headers=setup["write"])
        response = await api.client.get("/v1/transactions/counts", headers=setup["read"])
        assert response.status_code == 200, response.text
        counts = response.json()["counts"]
        assert (counts["queued"], counts["cancelled"], counts["confirmed"]) == (2, 1, 0)
        assert len(counts) == 9
        assert response.json()["window_s"] == 3600

    @pytest.mark.parametrize("window", ["0", "2592001", "x"])
    async def test_a_window_out_of_bounds_is_422(
        self, api: ApiHarness, setup: dict[str, Any], window: str
    ) -> None:
        response = await api.client.get(
            f"/v1/transactions/counts?window_s={window}", headers=setup["read"]
        )
        assert response.status_code == 422


class TestListSearch:
    async def test_by_idempotency_key_hash_and_newest_first(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        ids = [await submit(api, setup, key=f"order-{i}") for i in range(3)]
        found = await api.client.get(
            "/v1/transactions?idempotency_key=order-1", headers=setup["read"]
        )
        assert [t["id"] for t in found.json()["items"]] == [ids[1]]
        attempt_hash = "0x" + "ab" * 32
        async with unit_of_work(api.resources.sessionmaker) as session:
            session.add(_attempt(uuid.UUID(ids[2]), attempt_hash))
        by_hash = await api.client.get(
            f"/v1/transactions?hash={attempt_hash.upper().replace('0X', '0x')}",
            headers=setup["read"],
        )
        assert [t["id"] for t in by_hash.json()["items"]] == [ids[2]]
        seen: list[str] = []
        url = "/v1/transactions?order=desc&limit=2"
        page = (await api.client.get(url, headers=setup["read"])).json()
        seen += [t["id"] for t in page["items"]]
        while page["next_cursor"]:
            next_url = f"{url}&cursor={page['next_cursor']}"
            page = (await api.client.get(next_url, headers=setup["read"])).json()
            seen += [t["id"] for t in page["items"]]
        assert seen == ids[::-1]

    @pytest.mark.parametrize(
        "query",
        [
            "hash=0x12",
            "order=sideways",
            "idempotency_key=",
            "idempotency_key=a%00b",  # a NUL reached PostgreSQL: 500 (the OpenAPI fuzz test)
            "idempotency_key=two%20words",
        ],
    )
    async def test_bad_filters_are_422(
        self, api: ApiHarness, setup: dict[str, Any], query: str
    ) -> None:
        response = await api.client.get(f"/v1/transactions?{query}", headers=setup["read"])
        assert response.status_code == 422


def _attempt(tx_id: uuid.UUID, tx_hash: str) -> TxAttempt:
    return TxAttempt(
        tx_id=tx_id,
        kind=AttemptKind.ORIGINAL,
        status=AttemptStatus.SIGNED,
        nonce=0,
        gas_limit=21_000,
        raw=b"\x01",
        hash=tx_hash,
        last_error="underpriced",
    )


class TestLanes:
    async def test_pending_work_next_to_the_chain(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        await submit(api, setup)
        response = await api.client.get("/v1/lanes", headers=setup["read"])
        assert response.status_code == 200, response.text
        [lane] = response.json()["items"]
        assert lane["address"] == setup["wallet"]["address"]
        assert (lane["queued"], lane["in_flight"], lane["next_nonce"]) == (1, 0, 0)
        assert (lane["chain_nonce"], lane["balance_wei"]) == (0, "0")
        assert lane["oldest_pending_at"] is not None

    async def test_pages_and_filters(self, api: ApiHarness, setup: dict[str, Any]) -> None:
        other = await api.client.post(
            "/v1/wallets", headers=setup["wallets"], json={"generate": True, "chain_ids": [31337]}
        )
        first = await api.client.get("/v1/lanes?limit=1", headers=setup["read"])
        cursor = first.json()["next_cursor"]
        second = await api.client.get(f"/v1/lanes?limit=1&cursor={cursor}", headers=setup["read"])
        addresses = {lane["address"] for lane in first.json()["items"] + second.json()["items"]}
        assert addresses == {setup["wallet"]["address"], other.json()["address"]}
        assert second.json()["next_cursor"] is None
        one = await api.client.get(f"/v1/lanes?wallet={other.json()['id']}", headers=setup["read"])
        assert [lane["address"] for lane in one.json()["items"]] == [other.json()["address"]]
        bad = await api.client.get("/v1/lanes?cursor=%%%", headers=setup["read"])
        assert bad.status_code == 422


class TestChainsStatus:
    async def test_head_and_endpoint_health_read_once_per_interval(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        dead = f"http://127.0.0.1:{refusing_port()}/secret-path"
        async with unit_of_work(api.resources.sessionmaker) as session:
            session.add(RpcEndpoint(chain_id=31337, url=dead, weight=1, position=1))
        response = await api.client.get("/v1/chains/status", headers=setup["read"])
        assert response.status_code == 200, response.text
        chains = {c["chain_id"]: c for c in response.json()["items"]}
        anvil = chains[31337]
        assert anvil["head_block"] is not None
        assert anvil["head_age_s"] is not None
        live, down = anvil["endpoints"]
        assert (live["healthy"], live["error"]) == (True, None)
        assert (down["healthy"], down["error"]) == (False, "rpc_unreachable")
        assert "secret-path" not in response.text
        assert all(c["read_at"] is None for c in chains.values() if not c["enabled"])
        again = await api.client.get("/v1/chains/status", headers=setup["read"])
        assert {c["chain_id"]: c for c in again.json()["items"]}[31337]["read_at"] == anvil[
            "read_at"
        ]  # answered from this process's last read, not a new RPC


class TestTransactionDeliveries:
    async def test_every_endpoint_s_deliveries_of_one_transaction(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        admin = await api.key("admin")
        hooks = [
            (await api.client.post("/v1/webhooks", headers=admin, json={"url": url})).json()["id"]
            for url in ("http://127.0.0.1:9/a", "http://127.0.0.1:9/b")
        ]
        mine, other = await submit(api, setup), await submit(api, setup)
        async with unit_of_work(api.resources.sessionmaker) as session:
            await sequence_pending(session)
        async with unit_of_work(api.resources.sessionmaker) as session:
            await fan_out(session, now=utcnow())
        path = f"/v1/transactions/{mine}/deliveries"
        listed = await api.client.get(path, headers=setup["read"])
        assert listed.status_code == 200, listed.text
        items = listed.json()["items"]
        assert sorted(d["webhook_id"] for d in items) == sorted(hooks)
        assert {(d["event_type"], d["status"]) for d in items} == {
            ("transaction.queued", "pending")
        }
        first = await api.client.get(f"{path}?limit=1", headers=setup["read"])
        cursor = first.json()["next_cursor"]
        second = await api.client.get(f"{path}?limit=1&cursor={cursor}", headers=setup["read"])
        paged = first.json()["items"] + second.json()["items"]
        assert [d["id"] for d in paged] == [d["id"] for d in items]
        theirs = await api.client.get(f"/v1/transactions/{other}/deliveries", headers=admin)
        assert not {d["id"] for d in theirs.json()["items"]} & {d["id"] for d in items}

    async def test_unknown_transaction_404_and_a_key_of_another_wallet_403(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        tx_id = await submit(api, setup)
        missing = await api.client.get(
            f"/v1/transactions/{uuid.uuid4()}/deliveries", headers=setup["read"]
        )
        assert missing.status_code == 404
        async with unit_of_work(api.resources.sessionmaker) as session:
            _, token = await create_api_key(
                session, ["read"], limits=KeyLimits(wallet_ids=[uuid.uuid4()])
            )
        refused = await api.client.get(
            f"/v1/transactions/{tx_id}/deliveries", headers={"Authorization": f"Bearer {token}"}
        )
        assert (refused.status_code, refused.json()["code"]) == (403, "key_restricted")


class TestScheduleRunsNewestFirst:
    async def test_order_desc_pages_backwards(self, api: ApiHarness, setup: dict[str, Any]) -> None:
        headers = await api.key("schedules", "transactions:write")
        body = {
            "wallet": setup["wallet"]["id"],
            "chain_id": 31337,
            "trigger": {"interval_s": 3600},
            "action": {"type": "transaction", "to": setup["wallet"]["address"], "value": "1"},
        }
        schedule = (await api.client.post("/v1/schedules", headers=headers, json=body)).json()
        start = utcnow().replace(microsecond=0) - timedelta(days=1)
        async with unit_of_work(api.resources.sessionmaker) as session:
            for hour in range(3):
                session.add(
                    ScheduleRun(
                        schedule_id=uuid.UUID(schedule["id"]),
                        scheduled_for=start + timedelta(hours=hour),
                        status=RunStatus.SKIPPED,
                        reason=f"run {hour}",
                    )
                )
        url = f"/v1/schedules/{schedule['id']}/runs?order=desc&limit=2"
        page = (await api.client.get(url, headers=headers)).json()
        reasons = [r["reason"] for r in page["items"]]
        later = await api.client.get(f"{url}&cursor={page['next_cursor']}", headers=headers)
        reasons += [r["reason"] for r in later.json()["items"]]
        assert reasons == ["run 2", "run 1", "run 0"]
        assert later.json()["next_cursor"] is None
        oldest = await api.client.get(f"/v1/schedules/{schedule['id']}/runs", headers=headers)
        assert [r["reason"] for r in oldest.json()["items"]] == ["run 0", "run 1", "run 2"]
        sideways = await api.client.get(f"{url}&order=sideways", headers=headers)
        assert sideways.status_code == 422


class TestConsoleFiles:
    async def test_page_and_scripts_with_a_strict_policy(self, api: ApiHarness) -> None:
        page = await api.client.get("/console")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert '<script type="module" src="/console/app.js">' in page.text
        script = await api.client.get("/console/pages/overview.js")
        assert script.headers["content-type"].startswith("text/javascript")

    @pytest.mark.parametrize("path", ["/console/nope.js", "/console/../app.py", "/console/x.py"])
    async def test_nothing_else_is_served(self, api: ApiHarness, path: str) -> None:
        response = await api.client.get(path)
        assert response.status_code == 404
