"""What a tracking round and a status change's log cost the database (issue 17,
docs/performance.md items 18-20): the round reads its requests in flight in one statement
outside a DB transaction, and the snapshots of the events it logs come from its own
UPDATEs' RETURNING, not from a read-back. The snapshots stay what the rows are as of each
change, including the attempts a round did not write."""

import uuid
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.clock import utcnow
from chainflow.domain.chains import service as chains
from chainflow.domain.transactions.config import ChainConfig
from chainflow.domain.transactions.models import AttemptKind, AttemptStatus, TxAttempt
from chainflow.domain.transactions.send.answers import SentAttempt, record_answers
from chainflow.domain.transactions.state import TxStatus
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.rpc.client import RpcTransportError
from chainflow.infra.signing.keystore import MasterKey
from chainflow.workers.drain import drain_lanes
from chainflow.workers.main import run_round
from chainflow.workers.track import track_chain
from tests.integration.events.test_transaction_events import (
    of_tx,
    read_without_events,
    sequenced,
)
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.engine import EngineHarness, open_engine_harness


async def _chain(harness: EngineHarness) -> ChainConfig:
    async with unit_of_work(harness.sessionmaker) as session:
        return ChainConfig.of(await chains.get_chain(session, ANVIL_CHAIN_ID, endpoints=False))


# SQLite's bulk writes are executemany, which returns nothing: it reads back, as before.
@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
async def test_a_tracking_round_reads_in_flight_once_and_reads_nothing_back(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> None:
    async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:
        wallets = [await harness.wallet() for _ in range(2)]
        tx_ids = [await harness.submit(w, value="1") for w in wallets for _ in range(2)]
        chain = await _chain(harness)
        harness.engine.state.addresses.update({w.id: w.address for w in wallets})
        assert await drain_lanes(harness.engine, chain, [w.id for w in wallets]) == 4
        statements: list[tuple[str, object]] = []

        def count(conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
            isolation = conn.get_execution_options().get("isolation_level")
            statements.append((" ".join(sql.split()).upper(), isolation))

        engine = harness.sessionmaker.kw["bind"].sync_engine
        event.listen(engine, "before_cursor_execute", count)
        try:
            assert await track_chain(harness.engine, chain) == 4
        finally:
            event.remove(engine, "before_cursor_execute", count)
        final = [await harness.get(tx_id) for tx_id in tx_ids]
        rows = await sequenced(harness.sessionmaker)
    assert {tx.status for tx in final} == {TxStatus.CONFIRMED}  # one confirmation: one round
    # A tracker memory's first pass (and one every 30 s) also reads which lanes are shown
    # `nonce_gap` (track/gaps.py): one small read, not of the requests.
    reads = [
        (sql, iso)
        for sql, iso in statements
        if sql.startswith("SELECT") and "WALLET_CHAINS.PAUSED_REASON" not in sql
    ]
    # The in-flight read (requests joined to their attempts, in autocommit: no BEGIN or
    # COMMIT), then the lock of the rows it records. Before: the ORM's two SELECTs in a DB
    # transaction, and two more reading the recorded rows back for the snapshots.
    assert len(reads) == 2, reads
    assert "FOR UPDATE" not in reads[0][0], reads[0]
    assert reads[0][1] == "AUTOCOMMIT", reads[0]
    assert "TX_ATTEMPTS" in reads[0][0]
    assert "FOR UPDATE" in reads[1][0], reads[1]
    for tx in final:
        mine = of_tx(rows, tx.id)
        assert [row.type for row in mine][-2:] == ["transaction.mined", "transaction.confirmed"]
        assert mine[-1].data["transaction"] == read_without_events(tx)
        mined = mine[-2].data["transaction"]
        assert mined == {**read_without_events(tx), "status": "mined"}


async def test_a_snapshot_shows_the_attempts_its_round_did_not_write(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> None:
    """A signed request with two attempts (its original, whose send failed, and a bump) moves
    to submitted when a node accepts the bump: the event's snapshot shows both, as stored."""
    async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:
        wallet = await harness.wallet()
        tx_id = await harness.submit(wallet, value="1")
        chain = await _chain(harness)
        harness.engine.state.addresses[wallet.id] = wallet.address
        rpc = harness.engine.rpc(ANVIL_CHAIN_ID)
        batch = rpc.batch

        async def unreachable_sends(calls: Any) -> Any:
            if calls and calls[0][0] == "eth_sendRawTransaction":
                raise RpcTransportError("test: the node is unreachable")
            return await batch(calls)

        rpc.batch = unreachable_sends  # type: ignore[method-assign]
        try:
            assert await drain_lanes(harness.engine, chain, [wallet.id]) == 1
        finally:
            del rpc.batch
        original = (await harness.get(tx_id)).attempts[0]
        assert original.last_error == "transport"
        bump = TxAttempt(
            id=uuid.uuid4(),
            tx_id=tx_id,
            kind=AttemptKind.BUMP,
            status=AttemptStatus.SIGNED,
            nonce=original.nonce,
            gas_limit=original.gas_limit,
            max_fee_per_gas_wei=2 * (original.max_fee_per_gas_wei or 0),
            max_priority_fee_per_gas_wei=2 * (original.max_priority_fee_per_gas_wei or 0),
            raw=b"\x02",
            hash="0x" + "ab" * 32,
            broadcast_count=0,
            created_at=utcnow(),
        )
        async with unit_of_work(harness.sessionmaker) as session:
            session.add(bump)
        sent = SentAttempt(tx_id, bump.id, bump.raw, bump.nonce, bump.hash)
        async with unit_of_work(harness.sessionmaker) as session:
            assert await record_answers(session, ANVIL_CHAIN_ID, [sent], [bump.hash]) == []
        tx = await harness.get(tx_id)
        mine = of_tx(await sequenced(harness.sessionmaker), tx_id)
    assert tx.status is TxStatus.SUBMITTED
    assert [row.type for row in mine] == [
        "transaction.queued",
        "transaction.signed",
        "transaction.submitted",
    ]
    submitted = mine[-1].data["transaction"]
    assert [(a["kind"], a["broadcast_count"]) for a in submitted["attempts"]] == [
        ("original", 1),
        ("bump", 1),
    ]
    assert submitted == read_without_events(tx)


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
async def test_a_round_with_nothing_to_do_opens_no_db_transaction(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> None:
    """Its reads (the chain, lanes with work, schedules, requests in flight) and the tracker
    lease's one UPDATE each stand alone: no BEGIN and COMMIT round trips around them."""
    async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:
        statements: list[tuple[str, object]] = []

        def count(conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
            isolation = conn.get_execution_options().get("isolation_level")
            statements.append((" ".join(sql.split())[:80], isolation))

        engine = harness.sessionmaker.kw["bind"].sync_engine
        event.listen(engine, "before_cursor_execute", count)
        try:
            assert (await run_round(harness.engine, ANVIL_CHAIN_ID)).empty
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert any(sql.startswith("UPDATE chains") for sql, _ in statements), statements
    assert [s for s in statements if s[1] != "AUTOCOMMIT"] == []
