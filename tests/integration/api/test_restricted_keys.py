"""Restricted API keys through the real app on both databases: a key limited to a wallet or
chain is refused 403 elsewhere and sees only its own in lists, an expired key is 401 even
while cached, and GET /v1/me shows the key without its secret (issue 21)."""

import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from chainflow.core.clock import utcnow
from chainflow.domain.apikeys.service import KeyLimits, create_api_key
from chainflow.infra.db.uow import unit_of_work
from tests.support.chains import ANVIL_CHAIN_ID, add_anvil_chain
from tests.support.fixtures import ApiHarness, prepare_sender
from tests.support.fixtures import tx_body as body
from tests.support.polling import eventually

STRANGER = "0x" + "ab" * 20


async def restricted_key(
    api: ApiHarness, scopes: list[str], limits: KeyLimits
) -> tuple[dict[str, str], str]:
    async with unit_of_work(api.resources.sessionmaker) as session:
        _, token = await create_api_key(session, scopes, limits=limits)
    return {"Authorization": f"Bearer {token}"}, token


@pytest.fixture
async def setup(api: ApiHarness, anvil_url: str) -> dict[str, Any]:
    """Wallet A (the sender) and wallet B, one request each, and a key limited to A."""
    sender = await prepare_sender(api, anvil_url)
    other = await api.client.post(
        "/v1/wallets",
        headers=sender["wallets"],
        json={"generate": True, "chain_ids": [ANVIL_CHAIN_ID]},
    )
    sender["other"] = other.json()
    for wallet in (sender["wallet"], sender["other"]):
        sent = await api.client.post(
            "/v1/transactions",
            headers=sender["write"],
            json={**body(sender), "wallet": wallet["id"]},
        )
        assert sent.status_code == 202, sent.text
        wallet["tx"] = sent.json()["id"]
    limits = KeyLimits(wallet_ids=[uuid.UUID(sender["wallet"]["id"])])
    sender["limited"], _ = await restricted_key(api, ["transactions:write", "wallets"], limits)
    return sender


def refused(response: httpx.Response) -> bool:
    return response.status_code == 403 and bool(response.json()["code"] == "key_restricted")


class TestWalletRestriction:
    async def test_it_spends_only_from_its_wallet(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        key, other = setup["limited"], setup["other"]
        own = await api.client.post("/v1/transactions", headers=key, json=body(setup))
        assert own.status_code == 202, own.text
        for wallet in (other["id"], other["address"], STRANGER):  # existing or not: the same
            response = await api.client.post(
                "/v1/transactions", headers=key, json={**body(setup), "wallet": wallet}
            )
            assert refused(response), response.text
        batch = {"transactions": [body(setup), {**body(setup), "wallet": other["id"]}]}
        response = await api.client.post("/v1/transactions/batch", headers=key, json=batch)
        assert refused(response)
        assert response.json()["index"] == 1

    async def test_it_reads_only_its_wallet(self, api: ApiHarness, setup: dict[str, Any]) -> None:
        key, own, other = setup["limited"], setup["wallet"], setup["other"]
        wallets = await api.client.get("/v1/wallets", headers=key)
        assert [w["id"] for w in wallets.json()["items"]] == [own["id"]]
        txs = await api.client.get("/v1/transactions", headers=key)
        assert [t["id"] for t in txs.json()["items"]] == [own["tx"]]
        for path in (
            f"/v1/wallets/{other['id']}",
            f"/v1/wallets/{other['address']}",
            f"/v1/wallets/{STRANGER}",
            f"/v1/wallets/{other['id']}/chains/{ANVIL_CHAIN_ID}",
            f"/v1/transactions/{other['tx']}",
            f"/v1/transactions?wallet={other['id']}",
            f"/v1/wallets/{other['id']}/policy",
        ):
            assert refused(await api.client.get(path, headers=key)), path
        assert (
            await api.client.get(f"/v1/transactions/{own['tx']}", headers=key)
        ).status_code == 200
        cancel = await api.client.post(f"/v1/transactions/{other['tx']}/cancel", headers=key)
        assert refused(cancel)

    async def test_it_cannot_create_or_change_other_wallets(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        key, other = setup["limited"], setup["other"]
        assert refused(await api.client.post("/v1/wallets", headers=key, json={"generate": True}))
        assert refused(
            await api.client.patch(f"/v1/wallets/{other['id']}", headers=key, json={"label": "x"})
        )
        assert refused(
            await api.client.delete(
                f"/v1/wallets/{other['id']}/chains/{ANVIL_CHAIN_ID}", headers=key
            )
        )


class TestChainRestriction:
    async def test_a_key_limited_to_another_chain_is_refused_here(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        key, _ = await restricted_key(api, ["transactions:write"], KeyLimits(chain_ids=[1]))
        assert refused(await api.client.post("/v1/transactions", headers=key, json=body(setup)))
        assert refused(await api.client.get(f"/v1/chains/{ANVIL_CHAIN_ID}", headers=key))
        assert (await api.client.get("/v1/chains", headers=key)).json()["items"] == []
        assert (await api.client.get("/v1/transactions", headers=key)).json()["items"] == []

    async def test_it_sees_only_the_wallets_on_its_chains(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        """A wallet enabled on none of the key's chains is not listed, and reading it is
        refused as a wallet-limited key is refused another wallet: 403 whether it exists or
        not (the old code listed it with `chain_ids: []` and showed it)."""
        key, _ = await restricted_key(api, ["read"], KeyLimits(chain_ids=[ANVIL_CHAIN_ID]))
        elsewhere = await api.client.post(
            "/v1/wallets", headers=setup["wallets"], json={"generate": True}
        )
        hidden = elsewhere.json()
        listed = (await api.client.get("/v1/wallets", headers=key)).json()["items"]
        seen = {wallet["id"] for wallet in listed}
        assert seen == {setup["wallet"]["id"], setup["other"]["id"]}
        for ref in (hidden["id"], hidden["address"], str(uuid.uuid4()), STRANGER):
            assert refused(await api.client.get(f"/v1/wallets/{ref}", headers=key)), ref
        own = await api.client.get(f"/v1/wallets/{setup['wallet']['id']}", headers=key)
        assert own.json()["chain_ids"] == [ANVIL_CHAIN_ID]
        # Disabled on the key's chain: off its sight too.
        lane = f"/v1/wallets/{setup['other']['id']}/chains/{ANVIL_CHAIN_ID}"
        assert (await api.client.delete(lane, headers=setup["wallets"])).status_code == 200
        assert refused(await api.client.get(f"/v1/wallets/{setup['other']['id']}", headers=key))
        listed = (await api.client.get("/v1/wallets", headers=key)).json()["items"]
        assert [wallet["id"] for wallet in listed] == [setup["wallet"]["id"]]
        unrestricted = await api.client.get(f"/v1/wallets/{hidden['id']}", headers=setup["wallets"])
        assert unrestricted.status_code == 200

    async def test_its_wallet_routes_hide_wallets_off_its_chains(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        """A wallet's policy, evaluation and lanes answer as GET /v1/wallets/{id}: 403 for a
        wallet on none of the key's chains, existing or not, and no pulling it onto one (review:
        404 policy_not_found vs wallet_not_found told them apart; PUT enabled it, 200)."""
        key, _ = await restricted_key(
            api, ["read", "wallets"], KeyLimits(chain_ids=[ANVIL_CHAIN_ID])
        )
        made = await api.client.post(
            "/v1/wallets", headers=setup["wallets"], json={"generate": True}
        )
        hidden = made.json()["id"]
        for ref in (hidden, str(uuid.uuid4())):
            path, lane = f"/v1/wallets/{ref}", f"/v1/wallets/{ref}/chains/{ANVIL_CHAIN_ID}"
            draft = {**body(setup), "wallet": ref}
            assert refused(await api.client.get(f"{path}/policy", headers=key)), ref
            assert refused(
                await api.client.post(f"{path}/policy/evaluate", headers=key, json=draft)
            )
            for method in ("GET", "PUT", "DELETE"):
                assert refused(await api.client.request(method, lane, headers=key)), (method, ref)
            for listing in ("/v1/transactions", "/v1/events"):  # the lists' wallet filter too
                got = await api.client.get(listing, headers=key, params={"wallet": ref})
                assert refused(got), (listing, ref)
        after = await api.client.get(f"/v1/wallets/{hidden}", headers=setup["wallets"])
        assert after.json()["chain_ids"] == []

    @pytest.mark.usefixtures("setup")  # anvil's chain in the registry
    async def test_chain_status_shows_only_its_chains(
        self, api: ApiHarness, anvil_url: str
    ) -> None:
        async with unit_of_work(api.resources.sessionmaker) as session:
            await add_anvil_chain(session, anvil_url, chain_id=1)  # a second chain
        everyone = await api.client.get("/v1/chains/status", headers=await api.key("read"))
        assert {c["chain_id"] for c in everyone.json()["items"]} == {1, ANVIL_CHAIN_ID}
        for allowed in ([ANVIL_CHAIN_ID], [1]):
            key, _ = await restricted_key(api, ["read"], KeyLimits(chain_ids=allowed))
            response = await api.client.get("/v1/chains/status", headers=key)
            assert response.status_code == 200, response.text
            assert [c["chain_id"] for c in response.json()["items"]] == allowed


class TestExpiry:
    async def test_an_expired_key_is_refused_even_while_cached(self, api: ApiHarness) -> None:
        assert api.resources.settings.api_key_cache_s >= 5  # the default: the key stays cached
        limits = KeyLimits(expires_at=utcnow() + timedelta(seconds=1))
        key, _ = await restricted_key(api, ["read"], limits)
        assert (await api.client.get("/v1/chains", headers=key)).status_code == 200
        started = time.monotonic()

        async def expired() -> bool:
            response = await api.client.get("/v1/chains", headers=key)
            return response.status_code == 401 and response.json()["code"] == "api_key_expired"

        await eventually(expired, timeout_s=5, interval_s=0.05)
        assert time.monotonic() - started < api.resources.settings.api_key_cache_s


class TestMe:
    async def test_me_shows_the_key_and_its_limits_never_its_secret(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        wallet_id = setup["wallet"]["id"]
        expires = utcnow() + timedelta(days=30)
        limits = KeyLimits(
            wallet_ids=[uuid.UUID(wallet_id)],
            chain_ids=[ANVIL_CHAIN_ID],
            expires_at=expires,
            rate_per_s=5,
        )
        key, token = await restricted_key(api, ["read"], limits)
        response = await api.client.get("/v1/me", headers=key)
        assert response.status_code == 200, response.text
        me = response.json()
        assert (me["scopes"], me["wallet_ids"], me["chain_ids"]) == (
            ["read"],
            [wallet_id],
            [ANVIL_CHAIN_ID],
        )
        assert me["read_rate"]["per_s"] == me["write_rate"]["per_s"] == 5
        assert me["expires_at"].startswith(expires.isoformat()[:19])
        secret = token.split("_", 2)[2]  # cf_<prefix>_<secret>; the secret may hold "_"
        assert secret not in response.text
        assert "hash" not in response.text
        assert (await api.client.get("/v1/me")).status_code == 401


class TestRoutesThatShowEveryWallet:
    async def test_a_restricted_key_is_refused_where_results_cannot_be_narrowed(
        self, api: ApiHarness, setup: dict[str, Any]
    ) -> None:
        """Lanes, counts, webhooks and schedules show or act on every wallet: a key limited to
        one wallet gets 403 there rather than the others' data (events are narrowed to its
        own: tests/integration/api/test_events_api.py)."""
        limits = KeyLimits(wallet_ids=[uuid.UUID(setup["wallet"]["id"])])
        key, _ = await restricted_key(api, ["admin"], limits)
        schedule = {
            "wallet": setup["other"]["id"],
            "chain_id": ANVIL_CHAIN_ID,
            "trigger": {"interval_s": 60},
            "action": {"type": "transaction", "to": STRANGER, "value": "1"},
        }
        attempts = [
            ("GET", "/v1/lanes", None),
            ("GET", "/v1/transactions/counts", None),
            ("GET", "/v1/webhooks", None),
            ("POST", "/v1/webhooks", {"url": "https://example.com/hook"}),
            ("GET", "/v1/schedules", None),
            ("POST", "/v1/schedules", schedule),
        ]
        for method, path, json in attempts:
            response = await api.client.request(method, path, headers=key, json=json)
            assert refused(response), (path, response.status_code, response.text)
        unrestricted = await api.key("admin")
        listed = await api.client.get("/v1/schedules", headers=unrestricted)
        assert listed.json()["items"] == []  # nothing was stored


OTHER_CHAIN = 1  # a second chain in the registry (the same anvil behind it)


@pytest.fixture
async def two_chains(api: ApiHarness, setup: dict[str, Any], anvil_url: str) -> dict[str, Any]:
    """Wallet A enabled on anvil's chain and on a second one, with a policy that limits the
    second; keys limited to anvil's chain (and to A)."""
    async with unit_of_work(api.resources.sessionmaker) as session:
        await add_anvil_chain(session, anvil_url, chain_id=OTHER_CHAIN)
    wallet_id = setup["wallet"]["id"]
    enabled = await api.client.put(
        f"/v1/wallets/{wallet_id}/chains/{OTHER_CHAIN}", headers=setup["wallets"]
    )
    assert enabled.status_code == 200, enabled.text
    policy = {"limits": [{"window_s": 3600, "max_value_wei": "5000", "chain_id": OTHER_CHAIN}]}
    admin = await api.key("admin")
    put = await api.client.put(f"/v1/wallets/{wallet_id}/policy", headers=admin, json=policy)
    assert put.status_code == 200, put.text
    here = KeyLimits(wallet_ids=[uuid.UUID(wallet_id)], chain_ids=[ANVIL_CHAIN_ID])
    scopes = ["policies", "wallets", "read"]
    setup["here"], _ = await restricted_key(api, scopes, here)
    setup["wallet_only"], _ = await restricted_key(
        api, scopes, KeyLimits(wallet_ids=[uuid.UUID(wallet_id)])
    )
    setup["admin"] = admin
    return setup


class TestChainLimitedKeyAndWholeWallet:
    """A key limited to some chains cannot change what governs the wallet on every chain (its
    policy, status, label), nor evaluate or see the wallet's other chains."""

    async def test_it_cannot_replace_the_policy_nor_change_the_wallet(
        self, api: ApiHarness, two_chains: dict[str, Any]
    ) -> None:
        key, admin, wallet_id = two_chains["here"], two_chains["admin"], two_chains["wallet"]["id"]
        path = f"/v1/wallets/{wallet_id}"
        before = (await api.client.get(f"{path}/policy", headers=admin)).json()
        own_chain = {"window_s": 60, "max_value_wei": "1", "chain_id": ANVIL_CHAIN_ID}
        other_chain = {"window_s": 60, "max_value_wei": "999999", "chain_id": OTHER_CHAIN}
        for rules in ({}, {"limits": [own_chain]}, {"limits": [other_chain]}):
            response = await api.client.put(f"{path}/policy", headers=key, json=rules)
            assert refused(response), (rules, response.text)
            assert "every chain" in response.json()["detail"]
        for change in ({"status": "paused"}, {"label": "renamed"}):
            response = await api.client.patch(path, headers=key, json=change)
            assert refused(response), (change, response.text)
        assert (await api.client.get(f"{path}/policy", headers=admin)).json() == before
        wallet = (await api.client.get(path, headers=admin)).json()
        assert (wallet["status"], wallet["label"]) == ("active", None)
        # Its own chain's lane stays its to enable or disable; a key on every chain may do both.
        lane = await api.client.put(f"{path}/chains/{ANVIL_CHAIN_ID}", headers=key)
        assert lane.status_code == 200, lane.text
        wallet_only = two_chains["wallet_only"]
        assert (await api.client.put(f"{path}/policy", headers=wallet_only, json={})).is_success
        paused = await api.client.patch(path, headers=wallet_only, json={"status": "paused"})
        assert paused.status_code == 200, paused.text

    async def test_it_cannot_evaluate_another_chain(
        self, api: ApiHarness, two_chains: dict[str, Any]
    ) -> None:
        key, wallet_id = two_chains["here"], two_chains["wallet"]["id"]
        path = f"/v1/wallets/{wallet_id}/policy/evaluate"
        draft = {**body(two_chains), "wallet": wallet_id, "value": "4999"}
        for chain_id in (OTHER_CHAIN, 424242):  # registered or not: the same answer
            response = await api.client.post(
                path, headers=key, json={**draft, "chain_id": chain_id}
            )
            assert refused(response), (chain_id, response.text)
        own = await api.client.post(path, headers=key, json=draft)
        assert own.status_code == 200, own.text
        assert own.json()["allowed"] is True

    async def test_it_sees_only_its_chains_of_the_wallet(
        self, api: ApiHarness, two_chains: dict[str, Any]
    ) -> None:
        key, admin, wallet_id = two_chains["here"], two_chains["admin"], two_chains["wallet"]["id"]
        everything = (await api.client.get(f"/v1/wallets/{wallet_id}", headers=admin)).json()
        assert sorted(everything["chain_ids"]) == [OTHER_CHAIN, ANVIL_CHAIN_ID]
        one = (await api.client.get(f"/v1/wallets/{wallet_id}", headers=key)).json()
        listed = (await api.client.get("/v1/wallets", headers=key)).json()["items"]
        assert one["chain_ids"] == [ANVIL_CHAIN_ID]
        assert [(w["id"], w["chain_ids"]) for w in listed] == [(wallet_id, [ANVIL_CHAIN_ID])]
        lane = await api.client.put(f"/v1/wallets/{wallet_id}/chains/{ANVIL_CHAIN_ID}", headers=key)
        assert lane.json()["chain_ids"] == [ANVIL_CHAIN_ID]

    async def test_it_sees_only_its_chains_limits_of_the_policy(
        self, api: ApiHarness, two_chains: dict[str, Any]
    ) -> None:
        """The policy's limits of other chains are left out, as the wallet's other chains are
        (review: GET policy showed them)."""
        key, admin, wallet_id = two_chains["here"], two_chains["admin"], two_chains["wallet"]["id"]
        own = {"window_s": 60, "max_value_wei": "1", "chain_id": ANVIL_CHAIN_ID}
        other = {"window_s": 60, "max_value_wei": "999999", "chain_id": OTHER_CHAIN}
        every = {"window_s": 60, "max_value_wei": "7", "chain_id": None}
        path = f"/v1/wallets/{wallet_id}/policy"
        put = await api.client.put(path, headers=admin, json={"limits": [own, other, every]})
        assert put.status_code == 200, put.text
        for query in ("", f"?version={put.json()['version']}"):
            shown = (await api.client.get(path + query, headers=key)).json()["rules"]["limits"]
            assert [limit["chain_id"] for limit in shown] == [ANVIL_CHAIN_ID, None], query
        full = (await api.client.get(path, headers=admin)).json()["rules"]["limits"]
        assert [limit["chain_id"] for limit in full] == [ANVIL_CHAIN_ID, OTHER_CHAIN, None]
