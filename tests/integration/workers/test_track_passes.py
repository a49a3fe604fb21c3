"""When a round's sends are seen mined (issue 17, batch path): a round that signs thousands
takes seconds, and its sends used to wait for the next round's tracking pass, then for one
more when the drain's record of its sends committed while the tracker read the chain."""

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.clock import utcnow
from chainflow.core.types import TxId, WalletId
from chainflow.domain.chains import service as chains
from chainflow.domain.chains.models import Chain
from chainflow.domain.transactions import repository
from chainflow.domain.transactions.config import ChainConfig
from chainflow.domain.transactions.rows import InFlight
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.transactions.track import judge, observe, record
from chainflow.domain.transactions.track.judge import TrackerMemory
from chainflow.infra.db.uow import read_only, unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from chainflow.workers import main, tracking
from chainflow.workers import track as track_module
from chainflow.workers.drain import drain_lanes
from tests.integration.events.test_transaction_events import (
    of_tx,
    read_without_events,
    sequenced,
)
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.chaos import chain_config
from tests.support.engine import EngineHarness, open_engine_harness
from tests.support.polling import eventually


async def test_a_receipt_of_a_request_read_signed_is_recorded_once_its_send_is(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> None:
    """The tracker reads a request while it is `signed`; the drain sends it (anvil mines it)
    and records `submitted` before the tracker locks it. The receipt is recorded in that
    pass: `confirmed` at one confirmation, with its events in order, and the request is in
    each stage histogram once with its real times (the read has no send time: it was
    missing from queued_submitted and submitted_mined)."""
    async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:
        wallet = await harness.wallet()
        tx_id = await harness.submit(wallet, value="1")
        chain = await chain_config(harness)
        engine = harness.engine
        engine.state.addresses[wallet.id] = wallet.address
        rpc = engine.rpc(ANVIL_CHAIN_ID)
        batch = rpc.batch
        read: list[InFlight] = []

        async def read_then_send(calls: Any) -> Any:
            if calls and calls[0][0] == "eth_sendRawTransaction":  # signed, not yet sent
                async with read_only(harness.sessionmaker) as session:
                    read.extend(await repository.tracked(session, ANVIL_CHAIN_ID, limit=10))
            return await batch(calls)

        rpc.batch = read_then_send  # type: ignore[method-assign]
        try:
            assert await drain_lanes(engine, chain, [wallet.id]) == 1
        finally:
            del rpc.batch
        assert [tx.status for tx in read] == [TxStatus.SIGNED]
        assert (await harness.get(tx_id)).status is TxStatus.SUBMITTED
        seen = await observe.observe(rpc, read)
        decisions = judge.judge(
            read,
            seen,
            chain=chain,
            config=engine.config,
            memory=TrackerMemory(),
            sending=set(),
        )
        before = _stages()
        async with unit_of_work(harness.sessionmaker) as session:
            await record.record(
                session, read, decisions, seen, crasher=engine.ports.crasher, reasons={}
            )
        observed = {
            stage: (count - before[stage][0], took - before[stage][1])
            for stage, (count, took) in _stages().items()
        }
        tx = await harness.get(tx_id)
        mine = of_tx(await sequenced(harness.sessionmaker), tx_id)
    assert tx.status is TxStatus.CONFIRMED
    assert tx.final_hash == read[0].attempts[0].hash
    assert [row.type for row in mine] == [
        "transaction.queued",
        "transaction.signed",
        "transaction.submitted",
        "transaction.mined",
        "transaction.confirmed",
    ]
    assert mine[-1].data["transaction"] == read_without_events(tx)
    (sent,) = [a.first_sent_at for a in tx.attempts if a.first_sent_at is not None]
    mined, confirmed = (
        datetime.fromisoformat(row.data["transaction"]["updated_at"]) for row in mine[-2:]
    )
    expected = {
        "queued_submitted": (sent - tx.created_at).total_seconds(),
        "submitted_mined": (mined - sent).total_seconds(),
        "mined_confirmed": (confirmed - mined).total_seconds(),
        "request_final": (confirmed - tx.created_at).total_seconds(),
    }
    assert {stage: count for stage, (count, _) in observed.items()} == dict.fromkeys(expected, 1)
    for stage, (_, took) in observed.items():
        assert took == pytest.approx(expected[stage], abs=1e-3), stage


async def test_a_round_tracks_a_drain_s_sends_while_its_other_drains_run(
    sessionmaker: async_sessionmaker[AsyncSession],
    anvil_url: str,
    master_key: MasterKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two drains in one round: the second waits until the first one's request is
    confirmed. The round's tracker looks again once the first drain has sent, so it is;
    before, the round's only tracking pass ran at its start, and it never was."""
    async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:
        first, second = await harness.wallet(), await harness.wallet()
        ids = {w.id: await harness.submit(w, value="1") for w in (first, second)}
        monkeypatch.setattr(main, "_WORK_PER_DRAIN", 1)  # a drain per lane: two drains
        confirmed_first: list[bool] = []

        async def drain(
            engine: Any, chain: ChainConfig, wallet_ids: Sequence[WalletId], **kwargs: Any
        ) -> int:
            if list(wallet_ids) != [first.id]:
                confirmed_first.append(await _confirmed_within(harness, ids[first.id], 10.0))
            return await drain_lanes(engine, chain, wallet_ids, **kwargs)

        monkeypatch.setattr(main, "drain_lanes", drain)
        done = await main.run_round(harness.engine, ANVIL_CHAIN_ID)
        assert done.signed == 2
        assert done.tracking
        assert confirmed_first == [True]
        (tx,) = await harness.run_until_final([ids[second.id]])
    assert tx.status is TxStatus.CONFIRMED


def _stages() -> dict[str, tuple[float, float]]:
    """(count, sum) of each stage histogram of the test chain in this process's registry."""
    found: dict[str, tuple[float, float]] = {}
    for stage in ("queued_submitted", "submitted_mined", "mined_confirmed", "request_final"):
        labels = {"chain_id": str(ANVIL_CHAIN_ID), "stage": stage}
        count = REGISTRY.get_sample_value("chainflow_tx_stage_seconds_count", labels) or 0.0
        total = REGISTRY.get_sample_value("chainflow_tx_stage_seconds_sum", labels) or 0.0
        found[stage] = (count, total)
    return found


async def _confirmed_within(harness: EngineHarness, tx_id: TxId, timeout_s: float) -> bool:
    async def confirmed() -> bool:
        return (await harness.get(tx_id)).status is TxStatus.CONFIRMED

    try:
        await eventually(confirmed, timeout_s=timeout_s, what=f"{tx_id} confirmed")
    except AssertionError:
        return False  # told by the test's own assertion, outside the round that waited
    return True


async def test_a_pass_while_draining_renews_the_lease_and_stops_once_another_holds_it(
    sessionmaker: async_sessionmaker[AsyncSession],
    anvil_url: str,
    master_key: MasterKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pass may take as long as its slowest node or signer call: begun on what was left of
    the round's lease, it could outlast it while another worker tracks (and bumps) the chain.
    Each extra pass takes the lease again first; when another process holds it by then, the
    pass is not made (review)."""
    async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:
        first, second = await harness.wallet(), await harness.wallet()
        ids = {w.id: await harness.submit(w, value="1") for w in (first, second)}
        monkeypatch.setattr(main, "_WORK_PER_DRAIN", 1)  # a drain per lane: two drains
        takes: list[bool] = []
        asked_again = asyncio.Event()
        passes: list[int] = []
        take, track = chains.take_tracker_lease, track_module.track_chain

        async def counted_take(*args: Any, **kwargs: Any) -> bool:
            taken = await take(*args, **kwargs)
            takes.append(taken)
            if len(takes) > 1:
                asked_again.set()
            return taken

        async def counted_track(*args: Any, **kwargs: Any) -> int:
            passes.append(1)
            return await track(*args, **kwargs)

        async def drain(
            engine: Any, chain: ChainConfig, wallet_ids: Sequence[WalletId], **kwargs: Any
        ) -> int:
            if list(wallet_ids) != [first.id]:
                await _another_process_takes_the_lease(harness)
                with contextlib.suppress(TimeoutError):  # until the extra pass asked for it
                    await asyncio.wait_for(asked_again.wait(), timeout=10)
            return await drain_lanes(engine, chain, wallet_ids, **kwargs)

        monkeypatch.setattr(chains, "take_tracker_lease", counted_take)
        monkeypatch.setattr(tracking, "track_chain", counted_track)
        monkeypatch.setattr(main, "drain_lanes", drain)
        done = await main.run_round(harness.engine, ANVIL_CHAIN_ID)
        first_tx = await harness.get(ids[first.id])
    assert done.signed == 2
    assert takes == [True, False]
    assert passes == [1]  # the round's first pass only
    assert first_tx.status is TxStatus.SUBMITTED  # left to the lease's holder


async def _another_process_takes_the_lease(harness: EngineHarness) -> None:
    async with unit_of_work(harness.sessionmaker) as session:
        await session.execute(
            update(Chain)
            .where(Chain.chain_id == ANVIL_CHAIN_ID)
            .values(
                tracker_owner="another-worker", tracker_lease_until=utcnow() + timedelta(seconds=60)
            )
        )
