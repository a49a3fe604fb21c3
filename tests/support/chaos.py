"""Chaos for engine tests: anvil mining and fee controls, foreign sends, a crash point, and the
end-of-test check that a wallet's lane is final, gap-free and executed at most once."""

import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any

from eth_abi.abi import encode
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from chainflow.core.types import TxId
from chainflow.domain.chains import service as chains
from chainflow.domain.transactions.config import ChainConfig
from chainflow.domain.transactions.drain.estimate import estimate_gas
from chainflow.domain.transactions.drain.plan import Ready, has_unmined, lane_counts, plan_lanes
from chainflow.domain.transactions.drain.sign import sign_lanes
from chainflow.domain.transactions.models import AttemptKind, Transaction, TxAttempt
from chainflow.domain.transactions.send.answers import SentAttempt
from chainflow.domain.transactions.state import TxKind, TxStatus, is_terminal
from chainflow.domain.wallets.custody import signer_for
from chainflow.domain.wallets.models import Wallet, WalletChain
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.rpc.client import RpcClient
from chainflow.workers.main import run_round
from chainflow.workers.send import send_and_record
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.engine import SINK, EngineHarness, has_status
from tests.support.polling import eventually

GWEI = 10**9
MIN_BUMP = 1.10  # geth and Besu refuse a replacement below +10 % on tip and on fee cap


# --- anvil ----------------------------------------------------------------------------------


@asynccontextmanager
async def mining_stopped(rpc: RpcClient) -> AsyncIterator[None]:
    """Automine off for the block; always back on at the end (the anvil may be shared)."""
    await rpc.call("evm_setAutomine", [False])
    try:
        yield
    finally:
        await rpc.call("evm_setAutomine", [True])


async def resume_mining(rpc: RpcClient) -> None:
    """Automine on; anvil then mines what is pending at once."""
    await rpc.call("evm_setAutomine", [True])


async def mine_with_base_fee(rpc: RpcClient, base_fee_wei: int) -> None:
    """Mine one block whose base fee is `base_fee_wei`; anvil drops pool txs that cannot pay it."""
    await rpc.call("anvil_setNextBlockBaseFeePerGas", [hex(base_fee_wei)])
    await rpc.call("evm_mine")


async def head(rpc: RpcClient) -> int:
    return int(await rpc.call("eth_blockNumber"), 16)


async def receipt_of(rpc: RpcClient, tx_hash: str) -> dict[str, Any] | None:
    receipt: dict[str, Any] | None = await rpc.call("eth_getTransactionReceipt", [tx_hash])
    return receipt


async def deploy_reverter(rpc: RpcClient, reason: str) -> str:
    """Deploy, from anvil's unlocked account 0, a contract that reverts every call with
    `Error(reason)`; returns its address. Raw bytecode, so no compiler is needed."""
    payload = bytes.fromhex("08c379a0") + encode(["string"], [reason])
    # CODECOPY the payload (after this 12-byte header) to memory 0, then REVERT with it.
    size = f"{len(payload):02x}"
    runtime = bytes.fromhex(f"60{size}600c60003960{size}6000fd") + payload
    assert len(runtime) <= 0xFF
    length = f"{len(runtime):02x}"
    # CODECOPY the runtime (after this 12-byte header) to memory 0, then RETURN it.
    init = bytes.fromhex(f"60{length}600c60003960{length}6000f3") + runtime
    deployer = (await rpc.call("eth_accounts"))[0]
    tx_hash = await rpc.call("eth_sendTransaction", [{"from": deployer, "data": "0x" + init.hex()}])
    receipt = await eventually(lambda: receipt_of(rpc, tx_hash))
    assert int(receipt["status"], 16) == 1
    address: str = receipt["contractAddress"]
    assert await rpc.call("eth_getCode", [address, "latest"]) == "0x" + runtime.hex()
    return address


# --- the key used outside Chainflow ---------------------------------------------------------


async def send_foreign(harness: EngineHarness, wallet: Wallet, *, nonce: int) -> str:
    """Sign a transfer with the wallet's own key, outside Chainflow, send it and wait until it
    is mined; returns its hash."""
    signer = signer_for(wallet, master=harness.engine.ports.master_key)
    gas_price = int(await harness.rpc.call("eth_gasPrice"), 16)
    signed = await signer.sign_transaction(
        {
            "chainId": ANVIL_CHAIN_ID,
            "nonce": nonce,
            "to": SINK,
            "value": 7,
            "data": b"",
            "gas": 21_000,
            "type": 2,
            "maxFeePerGas": 2 * gas_price + GWEI,
            "maxPriorityFeePerGas": GWEI,
        }
    )
    tx_hash = await harness.rpc.call("eth_sendRawTransaction", ["0x" + signed.raw.hex()])
    assert tx_hash == signed.hash
    receipt = await eventually(lambda: receipt_of(harness.rpc, tx_hash))
    assert int(receipt["status"], 16) == 1
    return signed.hash


# --- engine steps ---------------------------------------------------------------------------


async def chain_config(harness: EngineHarness) -> ChainConfig:
    async with unit_of_work(harness.sessionmaker) as session:
        return ChainConfig.of(await chains.get_chain(session, ANVIL_CHAIN_ID))


async def update_chain(harness: EngineHarness, **fields: Any) -> None:
    """Change the chain row (caps, block time); the engine reads it again every round."""
    async with unit_of_work(harness.sessionmaker) as session:
        chain = await chains.get_chain(session, ANVIL_CHAIN_ID)
        for name, value in fields.items():
            setattr(chain, name, value)


async def sign_without_sending(harness: EngineHarness, wallet: Wallet) -> list[SentAttempt]:
    """The lane drain up to its write-ahead commit, then a "crash": the database holds signed
    attempts with nonces that no node has seen."""
    ports, state = harness.engine.ports, harness.engine.state
    chain = await chain_config(harness)
    rpc = harness.rpc
    counts = await lane_counts(rpc, {wallet.id: wallet.address})
    async with unit_of_work(harness.sessionmaker) as session:
        [planned] = await plan_lanes(
            session, chain, counts, owner=ports.owner, config=ports.config, holding=set()
        )
    found = await estimate_gas(
        rpc,
        [planned.rows],
        buffer_percent=ports.config.gas_buffer_percent,
        unmined_ahead=[has_unmined(planned.next_nonce, counts[wallet.id])],
    )
    [estimates] = found.ready
    market = await state.fees.fees(rpc, chain)
    ready = Ready(planned.wallet, estimates, counts[wallet.id], planned.rows)
    async with unit_of_work(harness.sessionmaker) as session:
        sent = await sign_lanes(
            session, chain, [ready], market, signers=state.signers, config=ports.config
        )
    assert sent
    return sent


async def run_rounds_until(
    harness: EngineHarness,
    tx_ids: Sequence[uuid.UUID],
    done: Callable[[list[Transaction]], bool],
    *,
    each_round: Callable[[list[Transaction]], Awaitable[None]] | None = None,
    timeout_s: float = 30,
) -> list[Transaction]:
    """Run engine rounds until `done(rows)`; `each_round` sees the rows after every round
    (to mine a block, or to assert an invariant that must hold all along)."""

    async def check() -> list[Transaction] | None:
        await run_round(harness.engine, ANVIL_CHAIN_ID)
        rows = [await harness.get(tx_id) for tx_id in tx_ids]
        if each_round is not None:
            await each_round(rows)
        return rows if done(rows) else None

    return await eventually(check, timeout_s=timeout_s, interval_s=0.05)


# --- reading the outcome --------------------------------------------------------------------


async def lane_next_nonce(harness: EngineHarness, wallet: Wallet) -> int:
    async with unit_of_work(harness.sessionmaker) as session:
        lane = await session.get(WalletChain, (wallet.id, ANVIL_CHAIN_ID))
        assert lane is not None
        return lane.next_nonce


async def lane_transactions(harness: EngineHarness, wallet: Wallet) -> list[Transaction]:
    """Every request of the wallet, fillers included, with attempts and events."""
    async with unit_of_work(harness.sessionmaker) as session:
        query = (
            select(Transaction)
            .where(Transaction.wallet_id == wallet.id)
            .options(selectinload(Transaction.attempts), selectinload(Transaction.events))
            .order_by(Transaction.created_at, Transaction.id)
        )
        return list((await session.scalars(query)).all())


def by_creation(attempts: Sequence[TxAttempt]) -> list[TxAttempt]:
    return sorted(attempts, key=lambda attempt: attempt.created_at)


def assert_valid_replacements(attempts: Sequence[TxAttempt], *, cap_wei: int | None) -> None:
    """Each attempt raises BOTH fee fields by at least 10 % over the one before; none is above
    the fee cap."""
    ordered = by_creation(attempts)
    for before, after in itertools.pairwise(ordered):
        assert before.max_fee_per_gas_wei is not None
        assert before.max_priority_fee_per_gas_wei is not None
        assert after.max_fee_per_gas_wei is not None
        assert after.max_priority_fee_per_gas_wei is not None
        assert after.max_fee_per_gas_wei * 100 >= before.max_fee_per_gas_wei * 110, (before, after)
        assert (
            after.max_priority_fee_per_gas_wei * 100 >= before.max_priority_fee_per_gas_wei * 110
        ), (before, after)
        assert after.nonce == before.nonce
    if cap_wei is not None:
        assert all((a.max_fee_per_gas_wei or 0) <= cap_wei for a in ordered), [
            a.max_fee_per_gas_wei for a in ordered
        ]


def transitions(tx: Transaction) -> list[tuple[str | None, str]]:
    return [(event.from_status, event.to_status) for event in tx.events]


async def confirmed_filler(harness: EngineHarness, wallet: Wallet) -> Transaction:
    """Run rounds until the wallet's one filler (a released nonce's stand-in) is confirmed."""

    async def found() -> Transaction | None:
        await run_round(harness.engine, ANVIL_CHAIN_ID)
        fillers = [
            tx for tx in await lane_transactions(harness, wallet) if tx.kind is TxKind.FILLER
        ]
        assert len(fillers) <= 1
        return fillers[0] if fillers and fillers[0].status is TxStatus.CONFIRMED else None

    return await eventually(found, timeout_s=60)


async def paused_reason(harness: EngineHarness, wallet: Wallet) -> str | None:
    """The lane's paused_reason as stored (GET /v1/wallets/{id}/chains/{chain_id} shows it)."""
    async with unit_of_work(harness.sessionmaker) as session:
        lane = await session.get(WalletChain, (wallet.id, ANVIL_CHAIN_ID))
        assert lane is not None
        return lane.paused_reason


async def check_only_its_lane_waits(
    harness: EngineHarness, good: Wallet, paused: Wallet, reason: str, good_ids: list[TxId]
) -> None:
    """`good`'s two requests (`good_ids`) and three more confirm at nonces 0-4 over more rounds,
    while `paused`'s two requests stay queued (no nonce taken) and its lane shows `reason`."""
    rows = await harness.run_until(good_ids, has_status(TxStatus.CONFIRMED))
    assert [tx.nonce for tx in rows] == [0, 1]
    for _ in range(3):  # more rounds: the lane keeps waiting, the other goes on
        good_ids.append(await harness.submit(good, value="9"))
        await run_round(harness.engine, ANVIL_CHAIN_ID)
    rows = await harness.run_until(good_ids, has_status(TxStatus.CONFIRMED))
    assert sorted(tx.nonce or 0 for tx in rows) == [0, 1, 2, 3, 4]
    waiting = await lane_transactions(harness, paused)
    assert [(tx.status, tx.nonce, tx.attempts) for tx in waiting] == [
        (TxStatus.QUEUED, None, [])
    ] * 2
    assert await lane_next_nonce(harness, paused) == 0
    assert await harness.chain_nonce(paused, "pending") == 0
    assert await paused_reason(harness, paused) == reason
    assert await paused_reason(harness, good) is None


async def bumped_while_paused(
    harness: EngineHarness, bumped: Wallet, paused: Wallet, reason: str | None
) -> bool:
    """One engine round; then whether `bumped`'s only request has a replacement and `paused`'s
    lane shows `reason` (None: not paused). Polled by the tests of a lane whose bumps wait."""
    await run_round(harness.engine, ANVIL_CHAIN_ID)
    (tx,) = await lane_transactions(harness, bumped)
    return len(tx.attempts) >= 2 and await paused_reason(harness, paused) == reason


async def check_a_gap_waits_for_its_filler(
    harness: EngineHarness, wallet: Wallet, fault: AbstractContextManager[None], *, reason: str
) -> None:
    """The node refuses nonce 0 for good while nonce 1 is sent: its filler (a self-transfer at
    nonce 0) is signed by the wallet's signer. While `fault` keeps that signer from signing
    well, nothing is released or consumed and the lane shows `reason` (not only its drains);
    afterwards the filler takes nonce 0 and the lane settles with no gap."""
    refused = await harness.submit(wallet, value="1", data="0x1234")
    await force_gas_limit(harness, refused, 40_000_000)  # anvil refuses it for good at send
    good = await harness.submit(wallet, value="2")
    sent = await sign_without_sending(harness, wallet)
    assert [s.nonce for s in sent] == [0, 1], sent
    with fault:
        await send_and_record(harness.engine, await chain_config(harness), sent)
        waiting = await harness.get(refused)
        assert (waiting.status, waiting.nonce) == (TxStatus.SIGNED, 0), describe(waiting)
        kinds = [tx.kind for tx in await lane_transactions(harness, wallet)]
        assert kinds == [TxKind.REQUEST] * 2, kinds
        assert await lane_next_nonce(harness, wallet) == 2
        paused = await paused_reason(harness, wallet)
        assert paused == reason, paused
    rows = await harness.run_until_final([refused, good], timeout_s=60)
    ends = [(tx.status, tx.nonce) for tx in rows]
    assert ends == [(TxStatus.FAILED, None), (TxStatus.CONFIRMED, 1)], ends
    filler = await confirmed_filler(harness, wallet)
    assert filler.nonce == 0, describe(filler)
    assert await paused_reason(harness, wallet) is None  # the filler's signature cleared it
    await assert_lane_settled(harness, wallet)


async def assert_lane_settled(
    harness: EngineHarness, wallet: Wallet, *, foreign_nonces: Sequence[int] = ()
) -> list[Transaction]:
    """The end state of every chaos test, read from the chain:

    - every request of the wallet (fillers included) is terminal;
    - each request has at most one attempt with a receipt, exactly one if it executed
      (confirmed, reverted, or a cancel that won), and it is the recorded final hash;
    - all attempts of a request share its nonce;
    - the mined nonces, ours plus `foreign_nonces`, are exactly 0..count-1 where count is
      eth_getTransactionCount(latest), and nothing of the wallet is left in the pool.
    """
    rows = await lane_transactions(harness, wallet)
    assert all(is_terminal(tx.status) for tx in rows), [(tx.id, tx.status) for tx in rows]
    mined_nonces: list[int] = list(foreign_nonces)
    for tx in rows:
        hashes = [attempt.hash for attempt in tx.attempts]
        receipts = await harness.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
        mined = [
            (attempt, receipt)
            for attempt, receipt in zip(tx.attempts, receipts, strict=True)
            if isinstance(receipt, dict)
        ]
        assert len({attempt.nonce for attempt in tx.attempts}) <= 1, tx.attempts
        executed = tx.status in (TxStatus.CONFIRMED, TxStatus.REVERTED) or (
            tx.status is TxStatus.CANCELLED and tx.nonce is not None
        )
        if not executed:
            assert mined == [], (tx.status, [a.hash for a, _ in mined])
            continue
        assert len(mined) == 1, (tx.status, [a.hash for a, _ in mined])
        attempt, receipt = mined[0]
        assert tx.final_hash == attempt.hash
        assert tx.block_hash == receipt["blockHash"]
        assert tx.nonce == attempt.nonce
        if tx.status is TxStatus.CANCELLED:
            assert attempt.kind is AttemptKind.CANCEL
        chain_tx = await harness.rpc.call("eth_getTransactionByHash", [attempt.hash])
        assert int(chain_tx["nonce"], 16) == tx.nonce
        mined_nonces.append(attempt.nonce)
    count = await harness.chain_nonce(wallet)
    assert sorted(mined_nonces) == list(range(count)), (sorted(mined_nonces), count)
    assert await harness.chain_nonce(wallet, "pending") == count
    return rows


async def force_gas_limit(harness: EngineHarness, tx_id: uuid.UUID, gas_limit: int) -> None:
    """Give a queued request a gas limit the node refuses at send time although the estimate
    passes: above the block gas limit, anvil answers "intrinsic gas too high" (fatal)."""
    async with unit_of_work(harness.sessionmaker) as session:
        tx = await session.get(Transaction, tx_id)
        assert tx is not None
        assert tx.status is TxStatus.QUEUED
        tx.gas_limit = gas_limit


async def run_until_final_or_deadline(
    harness: EngineHarness, tx_ids: Sequence[uuid.UUID], *, timeout_s: float
) -> list[Transaction]:
    """Run rounds until every request is terminal or the deadline passes; return the rows
    either way, so that the caller's assertion can show where a request got stuck."""
    last: list[Transaction] = []

    async def check() -> list[Transaction] | None:
        nonlocal last
        await run_round(harness.engine, ANVIL_CHAIN_ID)
        last = [await harness.get(tx_id) for tx_id in tx_ids]
        return last if all(is_terminal(tx.status) for tx in last) else None

    with contextlib.suppress(AssertionError):
        return await eventually(check, timeout_s=timeout_s, interval_s=0.05)
    return last


def describe(tx: Transaction) -> str:
    """A request's state, events and attempts on one line, for assertion messages."""
    attempts = [
        f"{a.kind.value}@{a.nonce} fee={a.max_fee_per_gas_wei} tip={a.max_priority_fee_per_gas_wei}"
        f" {a.status.value} sent={a.broadcast_count} err={a.last_error}"
        for a in by_creation(tx.attempts)
    ]
    return (
        f"status={tx.status.value} nonce={tx.nonce} error={tx.error_code}:{tx.error_message} "
        f"events={transitions(tx)} attempts({len(attempts)})={attempts}"
    )
