"""Group commit of submissions (PostgreSQL, issue 17): concurrent POST /v1/transactions are
stored in shared statements, and each caller still gets its own row and its own idempotency
outcome; a group whose statement fails stores each request on its own."""

import asyncio
import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
import sqlalchemy.event
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from chainflow.api.group_commit import GroupCommit
from chainflow.core.types import TxId, Wei
from chainflow.domain.chains.models import Chain
from chainflow.domain.events.models import EventRow
from chainflow.domain.transactions.models import Transaction, TxEventRow
from chainflow.domain.transactions.repository import intake
from chainflow.domain.transactions.rows import NewRequest
from chainflow.domain.wallets.models import Wallet, WalletChain, WalletStatus
from chainflow.infra.db.engine import create_engine
from chainflow.infra.db.uow import unit_of_work
from tests.integration.api.test_idempotency_keys import setup  # noqa: F401 - a fixture
from tests.support.fixtures import ApiHarness

SINK = "0x000000000000000000000000000000000000dEaD"

pytestmark = pytest.mark.parametrize("dialect", ["postgresql"])


async def _counts(api: ApiHarness) -> tuple[int, int, int]:
    async with unit_of_work(api.resources.sessionmaker) as session:
        txs = await session.scalar(select(func.count()).select_from(Transaction))
        logs = await session.scalar(select(func.count()).select_from(TxEventRow))
        events = await session.scalar(
            select(func.count()).select_from(EventRow).where(EventRow.type == "transaction.queued")
        )
    return int(txs or 0), int(logs or 0), int(events or 0)


async def test_concurrent_submissions_each_get_their_own_outcome(
    api: ApiHarness,
    setup: dict[str, Any],  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert api.resources.group_commit is not None
    sizes: list[int] = []
    real = intake.insert_grouped

    async def counted(db: AsyncConnection, requests: Sequence[NewRequest]) -> set[TxId]:
        sizes.append(len(requests))
        return await real(db, requests)

    monkeypatch.setattr(intake, "insert_grouped", counted)
    headers, transfer = setup["headers"], setup["transfer"]

    def post(body: dict[str, Any], key: str | None = None) -> Any:
        extra = {"Idempotency-Key": key} if key else {}
        return api.client.post("/v1/transactions", headers=headers | extra, json=body)

    keyless = [post(transfer | {"value": str(i + 1)}) for i in range(20)]
    same_key = [post(transfer | {"value": "7"}, "order-1") for _ in range(6)]
    other_body = post(transfer | {"value": "8"}, "order-1")
    answers = await asyncio.gather(*keyless, *same_key, other_body)

    assert max(sizes) > 1, sizes  # they were stored in groups
    plain, keyed, conflicting = answers[:20], answers[20:26], answers[26]
    assert [a.status_code for a in plain] == [202] * 20
    assert len({a.json()["id"] for a in plain}) == 20
    assert all("Idempotent-Replayed" not in a.headers for a in plain)
    # The key is stored once: by one of the same-key callers, or by the other body first.
    if conflicting.status_code == 202:
        assert all(a.status_code == 409 for a in keyed)
        assert (await _counts(api))[0] == 21
    else:
        assert (conflicting.status_code, conflicting.json()["code"]) == (
            409,
            "idempotency_key_reused",
        )
        assert [a.status_code for a in keyed] == [202] * 6
        assert len({a.json()["id"] for a in keyed}) == 1
        assert sum("Idempotent-Replayed" not in a.headers for a in keyed) == 1
        assert await _counts(api) == (21, 21, 21)


async def test_a_group_that_fails_stores_each_request_on_its_own(
    api: ApiHarness,
    setup: dict[str, Any],  # noqa: F811 - the fixture
) -> None:
    good = await api.client.post(
        "/v1/transactions", headers=setup["headers"], json=setup["transfer"]
    )
    assert good.status_code == 202
    async with unit_of_work(api.resources.sessionmaker) as session:
        row = (await session.scalars(select(Transaction))).one()
    template = NewRequest(**{f.name: getattr(row, f.name) for f in dataclasses.fields(NewRequest)})
    fine = dataclasses.replace(template, id=TxId(uuid.uuid4()))
    too_large = dataclasses.replace(template, id=TxId(uuid.uuid4()), value_wei=Wei(10**80))
    group = GroupCommit(create_engine(api.resources.settings.resolved_database_url), 0.05)
    try:
        # A value past NUMERIC(78) fails the group's one statement: neither is stored by it.
        answers = await asyncio.gather(group.insert(fine), group.insert(too_large))
        assert list(answers) == [None, None]
        assert (await _counts(api))[0] == 1
        # On its own, the fine one is stored, and the group's next statement works again.
        async with api.resources.engine.connect() as connection:
            assert await intake.insert_request(connection, fine)
            await connection.commit()
        again = dataclasses.replace(template, id=TxId(uuid.uuid4()))
        assert await group.insert(again) is True
        assert await _counts(api) == (3, 3, 3)
    finally:
        await group.close()


async def test_a_group_stored_but_unanswered_is_answered_once_never_stored_twice(
    api: ApiHarness,
    setup: dict[str, Any],  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The group's statement commits and its answer is lost (the connection drops): each
    caller stores its request on its own, finds it stored under its id, and gets 202 for
    that one row; without an idempotency key it was a 500, and the client's retry a second
    transfer."""
    real = intake.insert_grouped

    async def lost(db: AsyncConnection, requests: Sequence[NewRequest]) -> set[TxId]:
        await real(db, requests)  # committed: AUTOCOMMIT
        raise ConnectionResetError("the answer of the committed statement was lost")

    monkeypatch.setattr(intake, "insert_grouped", lost)
    headers, transfer = setup["headers"], setup["transfer"]
    answers = await asyncio.gather(
        *(
            api.client.post("/v1/transactions", headers=headers, json=transfer | {"value": str(v)})
            for v in range(1, 6)
        ),
        api.client.post(
            "/v1/transactions", headers=headers | {"Idempotency-Key": "k-1"}, json=transfer
        ),
    )
    assert [a.status_code for a in answers] == [202] * 6
    assert all("Idempotent-Replayed" not in a.headers for a in answers)
    assert await _counts(api) == (6, 6, 6)


async def _post(api: ApiHarness, setup: dict[str, Any], **extra: Any) -> Any:  # noqa: F811
    body = setup["transfer"] | extra
    return await api.client.post("/v1/transactions", headers=setup["headers"], json=body)


async def test_a_remembered_target_spares_the_read_of_chain_wallet_and_lane(
    api: ApiHarness,
    setup: dict[str, Any],  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[int] = []
    real = intake.find_target

    async def counted(db: intake.Executor, chain_id: int, wallet_ref: str) -> Any:
        reads.append(chain_id)
        return await real(db, chain_id, wallet_ref)

    monkeypatch.setattr(intake, "find_target", counted)
    answers = [await _post(api, setup, value=str(v)) for v in range(1, 4)]
    assert [a.status_code for a in answers] == [202] * 3
    assert len(reads) == 1  # the first request's; the next two were checked by the group's
    assert await _counts(api) == (3, 3, 3)


async def test_a_submission_that_runs_no_statement_of_its_own_takes_no_connection(
    api: ApiHarness,
    setup: dict[str, Any],  # noqa: F811 - the fixture
) -> None:
    """With its target remembered and no Idempotency-Key, the group's statement is the
    request's only one: it takes no connection of the API's pool (docs/performance.md item
    33). One that does run a statement (a replay's read) still gets one. (The key is
    remembered by the key cache after the first request.)"""
    taken: list[object] = []
    pool = api.resources.engine.sync_engine.pool

    def checkout(*_: object) -> None:
        taken.append(None)

    sqlalchemy.event.listen(pool, "checkout", checkout)
    first = await _post(api, setup, value="1")  # reads the target
    assert first.status_code == 202, first.text
    before = len(taken)
    answers = [await _post(api, setup, value=str(v)) for v in range(2, 5)]
    assert [a.status_code for a in answers] == [202] * 3
    assert len(taken) == before
    headers = setup["headers"] | {"Idempotency-Key": "lazy-1"}
    keyed = [
        await api.client.post("/v1/transactions", headers=headers, json=setup["transfer"])
        for _ in range(2)
    ]
    assert [a.status_code for a in keyed] == [202, 202]
    assert keyed[1].headers["Idempotent-Replayed"] == "true"
    assert len(taken) > before
    assert await _counts(api) == (5, 5, 5)
    sqlalchemy.event.remove(pool, "checkout", checkout)


async def _set(api: ApiHarness, statement: Any) -> None:
    """A change made by another process: straight in the database, nothing this API sees."""
    async with unit_of_work(api.resources.sessionmaker) as session:
        await session.execute(statement)


@pytest.mark.parametrize(
    ("change", "extra", "code"),
    [
        ("pause_wallet", {}, "wallet_not_active"),
        ("disable_wallet", {}, "wallet_not_active"),
        ("disable_lane", {}, "wallet_chain_disabled"),
        ("disable_chain", {}, "chain_disabled"),
        ("lower_fee_cap", {"max_fee_per_gas": "2000"}, "fee_above_chain_cap"),
        ("lower_tip_cap", {"max_priority_fee_per_gas": "2000"}, "fee_above_chain_cap"),
    ],
)
async def test_a_change_after_a_target_was_remembered_is_refused_as_without_it(
    api: ApiHarness,
    setup: dict[str, Any],  # noqa: F811 - the fixture
    change: str,
    extra: dict[str, str],
    code: str,
) -> None:
    """Another API process (here: the database itself) pauses the wallet, disables the lane
    or the chain, or lowers a cap after this process remembered the target: the next request
    is refused with the same code as without a remembered target, and nothing is stored."""
    assert (await _post(api, setup, **extra)).status_code == 202  # remembers the target
    wallet = setup["transfer"]["wallet"]
    wallets = update(Wallet).where(Wallet.address == wallet)
    chain = update(Chain).where(Chain.chain_id == 31337)
    statements = {
        "pause_wallet": wallets.values(status=WalletStatus.PAUSED),
        "disable_wallet": wallets.values(status=WalletStatus.DISABLED),
        "disable_lane": update(WalletChain)
        .where(WalletChain.chain_id == 31337)
        .values(enabled=False),
        "disable_chain": chain.values(enabled=False),
        "lower_fee_cap": chain.values(max_fee_per_gas_cap=1000),
        "lower_tip_cap": chain.values(max_priority_fee_per_gas_cap=1000),
    }
    await _set(api, statements[change])
    refused = await _post(api, setup, **extra)
    status = 422 if code == "fee_above_chain_cap" else 409
    assert (refused.status_code, refused.json()["code"]) == (status, code), refused.text
    assert await _counts(api) == (1, 1, 1)


async def test_a_policy_set_after_a_target_was_remembered_is_applied(
    api: ApiHarness,
    setup: dict[str, Any],  # noqa: F811 - the fixture
) -> None:
    assert (await _post(api, setup, value="5")).status_code == 202
    wallet = (
        await api.client.get(f"/v1/wallets/{setup['transfer']['wallet']}", headers=setup["headers"])
    ).json()
    policy = await api.client.put(
        f"/v1/wallets/{wallet['id']}/policy",
        headers=setup["headers"],
        json={"max_value_wei_per_tx": "9"},
    )
    assert policy.status_code == 200, policy.text
    denied = await _post(api, setup, value="10")
    assert (denied.status_code, denied.json()["code"]) == (403, "policy_denied"), denied.text
    assert denied.json()["rule"] == "max_value_wei_per_tx"
    assert (await _post(api, setup, value="9")).status_code == 202
    assert (await _counts(api))[0] == 2


async def test_a_cap_raised_after_a_refusal_was_remembered_admits(
    api: ApiHarness,
    setup: dict[str, Any],  # noqa: F811 - the fixture
) -> None:
    """A remembered target that refuses is read again: a cap raised since admits."""
    await _set(api, update(Chain).where(Chain.chain_id == 31337).values(max_fee_per_gas_cap=10))
    assert (await _post(api, setup, max_fee_per_gas="10")).status_code == 202
    await _set(api, update(Chain).where(Chain.chain_id == 31337).values(max_fee_per_gas_cap=99))
    assert (await _post(api, setup, max_fee_per_gas="99")).status_code == 202
    assert (await _counts(api))[0] == 2


async def test_a_failed_group_rechecks_a_remembered_target_before_storing_alone(
    api: ApiHarness,
    setup: dict[str, Any],  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the group's statement checks a remembered target again. When that statement fails
    (a dropped connection), the request is stored on its own: against a fresh read, so a
    wallet paused since it was remembered is refused, not stored (it was stored before)."""
    assert (await _post(api, setup, value="1")).status_code == 202  # remembers the target

    async def dropped(*_: object) -> set[TxId]:
        raise ConnectionResetError("the group's connection dropped before its statement ran")

    monkeypatch.setattr(intake, "insert_grouped", dropped)
    stored_alone = await _post(api, setup, value="2")
    assert stored_alone.status_code == 202, stored_alone.text
    wallet = setup["transfer"]["wallet"]
    await _set(
        api, update(Wallet).where(Wallet.address == wallet).values(status=WalletStatus.PAUSED)
    )
    refused = await _post(api, setup, value="3")
    assert (refused.status_code, refused.json()["code"]) == (409, "wallet_not_active"), refused.text
    assert await _counts(api) == (2, 2, 2)
