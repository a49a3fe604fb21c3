"""Transfers on anvil with an endpoint subscribed to `transaction.*`: every status change is
delivered, in order per transaction, and every signature verifies with `standardwebhooks`."""

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.domain.events import EventRow
from chainflow.domain.transactions.state import TxStatus
from chainflow.infra.db.uow import unit_of_work
from tests.integration.webhooks.conftest import Deliveries
from tests.support.engine import EngineHarness, harness_fixture, has_status
from tests.support.polling import eventually
from tests.support.receiver import Receiver, receiver

harness = harness_fixture()


async def transfer_and_check(
    harness: EngineHarness, deliveries: Deliveries, *, count: int, wallets: int
) -> None:
    async with receiver() as hook:
        _, secret = await deliveries.endpoint(hook.url, events=["transaction.*"])
        senders = [await harness.wallet() for _ in range(wallets)]
        async with deliveries.running(concurrency=32):
            ids = [
                await harness.submit(senders[i % wallets], value=str(1000 + i))
                for i in range(count)
            ]
            await harness.run_until(ids, has_status(TxStatus.CONFIRMED), timeout_s=60 + count)
            # The sequencer numbers the last events up to ~0.25 s after their commit.
            expected = await eventually(lambda: _expected(deliveries.sessionmaker), timeout_s=30)
            assert set(expected) == {str(i) for i in ids}

            async def all_delivered() -> bool:
                return _delivered(hook) == expected

            await eventually(all_delivered, timeout_s=60 + count / 5)
        assert all(r.verifies_with(secret) for r in hook.received)
        assert all(r.msg_id == r.envelope["id"] for r in hook.received)


async def _expected(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, list[str]]:
    """Every transaction event stored, by transaction, in tx_seq order (as webhook-ids)."""
    async with unit_of_work(sessionmaker) as session:
        rows = (await session.scalars(select(EventRow).order_by(EventRow.id))).all()
    found: dict[str, list[tuple[int, str]]] = {}
    for row in rows:
        if row.tx_id is not None and row.type.startswith("transaction."):
            found.setdefault(str(row.tx_id), []).append(
                (row.tx_seq or 0, f"evt_{row.event_id.hex}")
            )
    if any(seq == 0 for events in found.values() for seq, _ in events):
        return {}  # not all sequenced yet
    return {tx: [msg for _, msg in sorted(events)] for tx, events in found.items()}


def _delivered(hook: Receiver) -> dict[str, list[str]]:
    """The webhook-ids accepted per transaction, in arrival order (first acceptance only)."""
    seen: set[str] = set()
    order: dict[str, list[str]] = {}
    for r in hook.accepted():
        if r.msg_id in seen:
            continue
        seen.add(r.msg_id)
        order.setdefault(r.envelope["data"]["transaction"]["id"], []).append(r.msg_id)
    return order


class TestTransfers:
    async def test_50_transfers_every_status_change_in_order(
        self, harness: EngineHarness, deliveries: Deliveries
    ) -> None:
        await transfer_and_check(harness, deliveries, count=50, wallets=5)

    @pytest.mark.chaos_full
    async def test_1000_transfers_every_status_change_in_order(
        self, harness: EngineHarness, deliveries: Deliveries
    ) -> None:
        await transfer_and_check(harness, deliveries, count=1000, wallets=16)
