"""Transaction events from a real engine on anvil: one per status change, in the same DB
transaction, each with a snapshot as of its change; plus replaced and reorged."""

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.domain.events import EventRow, envelope, sequence_pending
from chainflow.domain.transactions import service as txs
from chainflow.domain.transactions.models import AttemptKind, Transaction
from chainflow.domain.transactions.schemas import TxRead
from chainflow.domain.transactions.state import TxStatus
from chainflow.infra.db.uow import unit_of_work
from tests.support.chaos import (
    head,
    mining_stopped,
    receipt_of,
    resume_mining,
    run_rounds_until,
    transitions,
)
from tests.support.engine import EngineHarness, harness_fixture, has_status


async def sequenced(sessionmaker: async_sessionmaker[AsyncSession]) -> list[EventRow]:
    """Sequence everything, then every event in cursor order."""
    while True:
        async with unit_of_work(sessionmaker) as session:
            if not await sequence_pending(session):
                break
    async with sessionmaker() as session:
        return list((await session.scalars(select(EventRow).order_by(EventRow.cursor))).all())


def of_tx(rows: list[EventRow], tx_id: uuid.UUID) -> list[EventRow]:
    return sorted((row for row in rows if row.tx_id == tx_id), key=lambda row: row.tx_seq or 0)


def changes(rows: list[EventRow]) -> list[tuple[str | None, str]]:
    """(previous_status, status) of each event's snapshot."""
    return [(row.data["previous_status"], row.data["transaction"]["status"]) for row in rows]


def read_without_events(tx: Transaction) -> dict[str, Any]:
    body = TxRead.of(tx).model_dump(mode="json", by_alias=True)
    del body["events"]
    return body


class TestTransfers:
    async def test_every_status_change_has_one_event_with_its_own_snapshot(
        self, harness: EngineHarness
    ) -> None:
        wallets = [await harness.wallet() for _ in range(5)]
        ids = [await harness.submit(wallets[i % 5], value=str(1000 + i)) for i in range(50)]
        final = await harness.run_until(ids, has_status(TxStatus.CONFIRMED), timeout_s=90)
        rows = await sequenced(harness.sessionmaker)

        assert [row.cursor for row in rows] == list(range(1, len(rows) + 1))
        for tx in final:
            mine = of_tx(rows, tx.id)
            assert [row.tx_seq for row in mine] == list(range(1, len(mine) + 1))
            assert [row.cursor for row in mine] == sorted(row.cursor or 0 for row in mine)
            assert changes(mine) == transitions(tx)  # one event per status change
            assert [row.type for row in mine] == [f"transaction.{s}" for _, s in transitions(tx)]
            assert {(row.wallet_id, row.chain_id) for row in mine} == {(tx.wallet_id, tx.chain_id)}
            queued, signed, submitted, *_ = (row.data["transaction"] for row in mine)
            assert (queued["nonce"], queued["attempts"], queued["hash"]) == (None, [], None)
            assert signed["nonce"] == tx.nonce
            assert [a["broadcast_count"] for a in signed["attempts"]] == [0]
            assert submitted["receipt"] is None
            assert mine[-1].data["transaction"] == read_without_events(tx)
            assert envelope(mine[-1])["data"]["transaction"]["status"] == "confirmed"


class TestReplacedAndReorged:
    async def test_a_cancel_attempt_is_a_replaced_event_and_then_the_request_is_cancelled(
        self, harness: EngineHarness
    ) -> None:
        rpc = harness.rpc
        wallet = await harness.wallet()
        async with mining_stopped(rpc):
            tx_id = await harness.submit(wallet, value="1")
            await harness.run_until([tx_id], has_status(TxStatus.SUBMITTED))
            async with unit_of_work(harness.sessionmaker) as session:
                await txs.cancel(session, tx_id, api_key_id=None, is_admin=True)
            await harness.run_until(
                [tx_id], lambda row: any(a.kind is AttemptKind.CANCEL for a in row.attempts)
            )
            await resume_mining(rpc)
            (tx,) = await harness.run_until_final([tx_id])
        mine = of_tx(await sequenced(harness.sessionmaker), tx_id)
        types = [row.type for row in mine]
        assert types[:3] == ["transaction.queued", "transaction.signed", "transaction.submitted"]
        assert types[3] == "transaction.replaced"
        assert types[-1] == "transaction.cancelled"
        replaced = mine[3].data
        assert replaced["transaction"]["status"] == "submitted"
        assert replaced["attempt"]["kind"] == "cancel"
        assert [a["kind"] for a in replaced["transaction"]["attempts"]] == ["original", "cancel"]
        assert [row.tx_seq for row in mine] == list(range(1, len(mine) + 1))
        assert tx.status is TxStatus.CANCELLED

    async def test_a_vanished_receipt_is_a_reorged_event_showing_no_receipt(
        self, deep_harness: EngineHarness
    ) -> None:
        harness, rpc = deep_harness, deep_harness.rpc
        wallet = await harness.wallet()
        tx_id = await harness.submit(wallet, value="1")
        (tx,) = await harness.run_until([tx_id], has_status(TxStatus.MINED))
        assert tx.block_number is not None
        await rpc.call("anvil_reorg", [await head(rpc) - tx.block_number + 1, []])
        assert await receipt_of(rpc, tx.attempts[0].hash) is None

        async def mine_while_mined(rows: list[Transaction]) -> None:
            if rows[0].status is TxStatus.MINED:
                await rpc.call("evm_mine")

        await run_rounds_until(
            harness,
            [tx_id],
            lambda rows: rows[0].status is TxStatus.CONFIRMED,
            each_round=mine_while_mined,
        )
        mine = of_tx(await sequenced(harness.sessionmaker), tx_id)
        assert [row.type for row in mine] == [
            "transaction.queued",
            "transaction.signed",
            "transaction.submitted",
            "transaction.mined",
            "transaction.reorged",
            "transaction.mined",
            "transaction.confirmed",
        ]
        reorged = mine[4].data
        assert (reorged["previous_status"], reorged["transaction"]["status"]) == (
            "mined",
            "submitted",
        )
        assert reorged["transaction"]["receipt"] is None
        assert mine[3].data["transaction"]["receipt"]["block_hash"] == tx.block_hash


deep_harness = harness_fixture(own_anvil=True, confirmations=3)
