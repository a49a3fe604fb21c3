"""The audit log through the real app on both databases: every audited change appears once
in GET /v1/audit with its key and address, written with the change; filters and cursor
pages work; only admin keys read it; no secret is ever in it (issue 21)."""

import pytest
from sqlalchemy import select

from chainflow.domain.audit.models import AuditEntry
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.local import generate_private_key
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.fixtures import ApiHarness

CHAIN = ANVIL_CHAIN_ID


async def changes(api: ApiHarness, admin: dict[str, str], anvil_url: str) -> tuple[list[str], str]:
    """Make one change of each audited kind; their actions in order, and the imported key."""
    client = api.client
    chain = {
        "chain_id": CHAIN,
        "name": "Anvil",
        "native_symbol": "ETH",
        "rpc_urls": [anvil_url],
        "eip1559": True,
        "confirmations": 1,
    }
    assert (await client.post("/v1/chains", headers=admin, json=chain)).status_code == 201
    assert (
        await client.patch(f"/v1/chains/{CHAIN}", headers=admin, json={"confirmations": 2})
    ).status_code == 200
    private_key = "0x" + generate_private_key().reveal().hex()
    imported = await client.post("/v1/wallets", headers=admin, json={"private_key": private_key})
    assert imported.status_code == 201, imported.text
    wallet = imported.json()["id"]
    generated = await client.post("/v1/wallets", headers=admin, json={"generate": True})
    assert generated.status_code == 201
    steps = [
        client.patch(f"/v1/wallets/{wallet}", headers=admin, json={"label": "treasury"}),
        client.put(f"/v1/wallets/{wallet}/chains/{CHAIN}", headers=admin),
        client.delete(f"/v1/wallets/{wallet}/chains/{CHAIN}", headers=admin),
        client.put(
            f"/v1/wallets/{wallet}/policy", headers=admin, json={"max_value_wei_per_tx": "1"}
        ),
    ]
    for step in steps:
        response = await step
        assert response.status_code == 200, response.text
    other = generated.json()["id"]
    hook = await client.post(
        "/v1/webhooks", headers=admin, json={"url": "https://example.com/hook"}
    )
    assert hook.status_code == 201, hook.text
    hook_path = f"/v1/webhooks/{hook.json()['id']}"
    schedule_body = {
        "wallet": other,
        "chain_id": CHAIN,
        "trigger": {"interval_s": 3600},
        "action": {"type": "transaction", "to": "0x" + "ab" * 20, "value": "1"},
    }
    late_steps = [
        client.patch(hook_path, headers=admin, json={"description": "payouts"}),
        client.post(f"{hook_path}/rotate-secret", headers=admin),
        client.delete(hook_path, headers=admin),
        client.put(f"/v1/wallets/{other}/chains/{CHAIN}", headers=admin),
    ]
    for step in late_steps:
        response = await step
        assert response.status_code in (200, 204), response.text
    schedule = await client.post("/v1/schedules", headers=admin, json=schedule_body)
    assert schedule.status_code == 201, schedule.text
    schedule_path = f"/v1/schedules/{schedule.json()['id']}"
    for step in (
        client.patch(schedule_path, headers=admin, json={"status": "paused"}),
        client.patch(schedule_path, headers=admin, json={"status": "active"}),
        client.delete(schedule_path, headers=admin),
    ):
        response = await step
        assert response.status_code == 200, response.text
    actions = [
        "chain.created",
        "chain.updated",
        "wallet.imported",
        "wallet.generated",
        "wallet.updated",
        "wallet.chain_enabled",
        "wallet.chain_disabled",
        "policy.updated",
        "webhook.created",
        "webhook.updated",
        "webhook.secret_rotated",
        "webhook.deleted",
        "wallet.chain_enabled",
        "schedule.created",
        "schedule.paused",
        "schedule.resumed",
        "schedule.cancelled",
    ]
    return actions, private_key


class TestAudit:
    async def test_every_change_appears_once_without_a_secret(
        self, api: ApiHarness, anvil_url: str
    ) -> None:
        admin = await api.key("admin")
        actions, private_key = await changes(api, admin, anvil_url)
        me = (await api.client.get("/v1/me", headers=admin)).json()
        listed = await api.client.get("/v1/audit", headers=admin)
        assert listed.status_code == 200, listed.text
        items = listed.json()["items"]
        assert [item["action"] for item in items] == actions
        assert {(item["key_id"], item["remote_addr"], item["actor"]) for item in items} == {
            (me["id"], "127.0.0.1", "api")
        }
        assert {item["resource"] for item in items} == {"chain", "wallet", "webhook", "schedule"}
        assert private_key[2:] not in listed.text
        assert "whsec_" not in listed.text
        async with unit_of_work(api.resources.sessionmaker) as session:
            rows = (await session.scalars(select(AuditEntry))).all()
        assert len(rows) == len(actions)
        assert all(private_key[2:] not in repr(vars(row)) for row in rows)

    async def test_filters_and_pages(self, api: ApiHarness, anvil_url: str) -> None:
        admin = await api.key("admin")
        actions, _ = await changes(api, admin, anvil_url)
        one = await api.client.get("/v1/audit?action=wallet.updated", headers=admin)
        assert [item["action"] for item in one.json()["items"]] == ["wallet.updated"]
        chains = await api.client.get(
            f"/v1/audit?resource=chain&resource_id={CHAIN}", headers=admin
        )
        assert len(chains.json()["items"]) == 2
        seen: list[str] = []
        cursor = None
        while True:
            page = await api.client.get(
                "/v1/audit",
                headers=admin,
                params={"limit": 3, **({"cursor": cursor} if cursor else {})},
            )
            seen += [item["action"] for item in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert seen == actions

    @pytest.mark.parametrize("name", ["action", "resource", "resource_id"])
    async def test_a_nul_in_a_filter_is_a_422_not_a_500(self, api: ApiHarness, name: str) -> None:
        # PostgreSQL text cannot hold NUL: the statement failed (the OpenAPI fuzz found it).
        admin = await api.key("admin")
        response = await api.client.get("/v1/audit", headers=admin, params={name: "a\x00b"})
        assert response.status_code == 422
        assert response.headers["content-type"].startswith("application/problem+json")

    async def test_only_admin_keys_read_it(self, api: ApiHarness) -> None:
        for scopes in (("read",), ("wallets", "policies", "transactions:write")):
            response = await api.client.get("/v1/audit", headers=await api.key(*scopes))
            assert response.status_code == 403
        assert (await api.client.get("/v1/audit")).status_code == 401

    async def test_a_refused_change_leaves_no_entry(self, api: ApiHarness) -> None:
        admin = await api.key("admin")
        response = await api.client.patch(
            "/v1/wallets/" + "0x" + "11" * 20, headers=admin, json={"label": "x"}
        )
        assert response.status_code == 404
        assert (await api.client.get("/v1/audit", headers=admin)).json()["items"] == []
