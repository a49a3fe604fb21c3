"""The drain round: the one place that opens the DB transactions of a drain of lanes.

    counts (RPC) → plan [tx] → estimate (RPC) → fail reverts [tx] → sign [tx, committed
    before any send] → send (RPC) → record [tx] → release refused nonces [tx each]

A drain of one lane whose chain mines what it is sent at once (it had nothing unmined when
counted) and that signed a full window has more queued: it goes on with a next step, planned
while this step's sends go out and are recorded, estimated and signed once the node has
answered them and the counts read again show room (docs/performance.md item 37).

docs/engine.md draws it with the module of each step.
"""

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from chainflow.core.crashpoints import CrashPoint
from chainflow.core.logging import get_logger
from chainflow.core.types import TxId, WalletId
from chainflow.domain.transactions.config import ChainConfig, EngineConfig
from chainflow.domain.transactions.drain.estimate import estimate_gas, fail_refused
from chainflow.domain.transactions.drain.fee_floor import known_floor
from chainflow.domain.transactions.drain.plan import (
    Counts,
    Planned,
    Ready,
    has_unmined,
    lane_counts,
    plan_lanes,
    room_of,
    settle_lanes,
)
from chainflow.domain.transactions.drain.sign import probe_paused, sign_lanes
from chainflow.domain.transactions.fees import Fees
from chainflow.domain.transactions.send.answers import SentAttempt
from chainflow.domain.wallets.service import addresses_of
from chainflow.infra.db.uow import unit_of_work
from chainflow.workers.engine import Engine
from chainflow.workers.send import Sending, start_sending

log = get_logger(__name__)

# Steps the drain of a round's only lane may take before the round ends (the round's reads and
# schedules wait for it): 8 full windows of 64 are ~0.3-0.5 s on anvil. A round of several
# lanes takes one step per lane: each drain already signs up to 64 for each of its lanes, a
# lane in steps would hold the round's other drains back, and 32 deep lanes in steps kept the
# tracker (on the same event loop) behind, its passes reading ever more receipts: batches of
# 100, 1,072 and 496 tx/s against 1,332 and 1,179 (docs/performance.md item 37).
STEPS_ALONE = 8
# The pauses before each new read of a lane's counts while the node is still mining a step's
# sends (`_rooms_once_mined`): anvil mines a window of 64 in ~5-30 ms on a busy 2-core
# machine; 5 reads in 31 ms at most.
_MINING_PAUSES_S = (0.001, 0.002, 0.004, 0.008, 0.016)


async def drain_lane(engine: Engine, chain: ChainConfig, wallet_id: WalletId) -> int:
    """One round for one (wallet, chain) lane; returns how many requests were signed."""
    return await drain_lanes(engine, chain, [wallet_id], steps=STEPS_ALONE)


async def drain_lanes(
    engine: Engine,
    chain: ChainConfig,
    wallet_ids: Sequence[WalletId],
    *,
    steps: int = 1,
    recorded: Callable[[], None] | None = None,
) -> int:
    """One round for these lanes of one chain, batched: one planning read, one estimate batch,
    one signing transaction, one send batch and one record for all of them (the fixed cost
    of a round no longer grows with the number of wallets), and up to `steps` of them for a
    lane that keeps a full window going (`_more_to_sign`). Returns how many were signed;
    `recorded` is called each time a step's sends are recorded.

    A lane this process is already draining is skipped: the running drain or the next round
    takes what is new, and estimating the same requests twice would only waste a round trip
    (the lane lock in the database is what keeps other processes out of the nonces).
    """
    draining = engine.state.draining
    lanes = [(w, chain.chain_id) for w in dict.fromkeys(wallet_ids)]
    mine = [lane for lane in lanes if lane not in draining]
    if not mine:
        return 0
    draining.update(mine)
    signed_ids: set[TxId] = set()
    try:
        return await _drain(
            engine,
            chain,
            [wallet_id for wallet_id, _ in mine],
            steps,
            recorded,
            signed_ids=signed_ids,
        )
    finally:
        draining.difference_update(mine)
        engine.state.sending.difference_update(signed_ids)


async def settle_unsignable(
    engine: Engine, chain: ChainConfig, wallet_ids: Sequence[WalletId]
) -> None:
    """Expire and fail, without signing, the requests of lanes this process leaves because
    its signer for them is down here (workers/placement.py), so that a lane down on every
    worker still has its requests past valid_until expired and a disabled wallet's failed
    (drain/plan.settle_lanes). A lane that a drain of this process is in is left to it; the
    fee floor is the last one read (no RPC)."""
    draining = engine.state.draining
    lanes = [w for w in wallet_ids if (w, chain.chain_id) not in draining]
    if not lanes:
        return
    ports = engine.ports
    async with unit_of_work(ports.sessionmaker) as session:
        await settle_lanes(
            session,
            chain,
            lanes,
            owner=ports.owner,
            config=ports.config,
            floor=known_floor(engine.state.fees, chain),
        )


async def _drain(
    engine: Engine,
    chain: ChainConfig,
    wallet_ids: list[WalletId],
    steps: int,
    recorded: Callable[[], None] | None,
    *,
    signed_ids: set[TxId],
) -> int:
    """The drain's steps; `signed_ids` receives the requests it signs, which the tracker leaves
    to it (`WorkerState.sending`) until the caller takes them out once the drain ended."""
    counts = await _counts(engine, chain, wallet_ids)
    signed = 0
    sending: list[Sending] = []

    def on_recorded() -> None:  # a step's sends are recorded: the tracker may look for them
        engine.signal_sends(chain.chain_id)
        if recorded is not None:
            recorded()

    try:
        for _ in range(steps):
            if not counts:
                break
            found = await _ready(engine, chain, counts, sending)
            if found is None:
                break
            ready, fees = found
            sent = await _sign(engine, chain, ready, fees, signed_ids=signed_ids)
            if not sent:
                break
            engine.ports.crasher.reached(CrashPoint.ATTEMPT_STORED)
            sending.append(start_sending(engine, chain, sent, recorded=on_recorded))
            # The sends go out before the next step's plan takes the loop: the node's answer
            # is what the next step waits for (docs/performance.md item 50).
            await asyncio.sleep(0)
            signed += len(sent)
            counts = _more_to_sign(ready, sent, full=engine.ports.config.batch_size)
    except BaseException:  # the drain's own failure (or cancellation) is the one to raise
        await _finish(sending, raise_first=False)
        raise
    await _finish(sending)
    return signed


async def _ready(
    engine: Engine, chain: ChainConfig, counts: dict[WalletId, Counts], sending: list[Sending]
) -> tuple[list[Ready], Fees] | None:
    """A step's lanes cleared for signing and the fees: planned (while the last step's sends,
    if any, go out), then, once those are answered, kept only where there is room, estimated."""
    planned = await _plan(engine, chain, counts)
    if planned is None:
        return None
    plans, fees = planned
    if sending:
        cleared = await _room_after(engine, chain, sending, plans, counts)
        if cleared is None:
            return None
        plans, counts = cleared
    ready = await _estimate(engine, chain, plans, counts)
    return (ready, fees) if ready else None


async def _plan(
    engine: Engine, chain: ChainConfig, counts: dict[WalletId, Counts]
) -> tuple[list[Planned], Fees] | None:
    """Plan one step: the lanes' queued requests to sign (leases renewed) and the market's
    fees."""
    ports, state = engine.ports, engine.state
    now = await state.fees.market(engine.rpc(chain.chain_id), chain)
    holding: set[WalletId] = set()
    async with unit_of_work(ports.sessionmaker) as session:
        plans = await plan_lanes(
            session,
            chain,
            counts,
            owner=ports.owner,
            config=ports.config,
            base_fee_wei=now.base_fee_wei,
            holding=holding,
        )
    if holding:
        state.leased_at[chain.chain_id] = time.monotonic()
    plans = probe_paused(plans, state.signers, chain)
    return (plans, now.fees) if plans else None


async def _estimate(
    engine: Engine, chain: ChainConfig, plans: list[Planned], counts: dict[WalletId, Counts]
) -> list[Ready]:
    """Estimate the planned requests; fail those the node refuses; the lanes cleared for
    signing.

    A lane has something ahead unmined (`has_unmined`) on its next nonce when planned and
    `counts`, read before this estimate: a first step's before its plan, a next step's once
    the last step's sends were answered (`_room_after`), after the plan that read that step's
    nonces. Both are older than the estimate, so a nonce mined since only makes a lane look
    unmined: a request that reverts for good then waits a round more, never fails early."""
    ports, waits = engine.ports, engine.state.estimate_waits
    # A lane whose first request waits, on the next nonce and node counts it began to wait on,
    # is not estimated again: nothing ahead of it was mined, dropped or released, so its answer
    # cannot have changed (a round every poll would otherwise estimate the lane's whole room,
    # for a whole block).
    plans = [
        plan
        for plan in plans
        if waits.get((plan.wallet.id, chain.chain_id))
        != (plan.rows[0].id, plan.next_nonce, counts[plan.wallet.id])
    ]
    if not plans:
        return []
    found = await estimate_gas(
        engine.rpc(chain.chain_id),
        [plan.rows for plan in plans],
        buffer_percent=ports.config.gas_buffer_percent,
        unmined_ahead=[has_unmined(plan.next_nonce, counts[plan.wallet.id]) for plan in plans],
    )
    for plan, head in zip(plans, found.waiting, strict=True):
        lane = (plan.wallet.id, chain.chain_id)
        if head is None:
            waits.pop(lane, None)
        else:
            waits[lane] = (head, plan.next_nonce, counts[plan.wallet.id])
    if found.refused:
        async with unit_of_work(ports.sessionmaker) as session:
            await fail_refused(session, found.refused)
    return [
        Ready(plan.wallet, estimates, counts[plan.wallet.id], plan.rows)
        for plan, estimates in zip(plans, found.ready, strict=True)
        if estimates
    ]


async def _sign(
    engine: Engine, chain: ChainConfig, ready: list[Ready], fees: Fees, *, signed_ids: set[TxId]
) -> list[SentAttempt]:
    """The write-ahead boundary (DESIGN §6.3): nonces, signed bytes and hashes are committed
    here, before the first send. The signed requests go into `signed_ids` and
    `WorkerState.sending` before the commit: the tracker, which may read them `signed` as
    soon as it is done, leaves them to this drain."""
    ports = engine.ports
    async with unit_of_work(ports.sessionmaker) as session:
        sent = await sign_lanes(
            session, chain, ready, fees, signers=engine.state.signers, config=ports.config
        )
        if sent:
            ports.crasher.reached(CrashPoint.NONCE_TAKEN)
        signed_ids.update(one.tx_id for one in sent)
        engine.state.sending.update(signed_ids)
    return sent


async def _room_after(
    engine: Engine,
    chain: ChainConfig,
    sending: Sequence[Sending],
    plans: list[Planned],
    planned_on: dict[WalletId, Counts],
) -> tuple[list[Planned], dict[WalletId, Counts]] | None:
    """The next step's lanes that still have room once the node has answered the last step's
    sends, with the counts read then and their rows cut to that room, or None to end the
    drain (also when an earlier step's send or record failed).

    max_in_flight_per_lane still bounds the nonces taken and not mined, and on a chain that
    has not mined them yet nothing is estimated (no RPC spent on a step that cannot sign). A
    send the node did not plainly accept ends the drain: it is recorded (and its nonce
    released) first, and the next round plans afresh."""
    if not await sending[-1].answered or any(_failed(step) for step in sending):
        return None
    counts, rooms = await _rooms_once_mined(engine, chain, plans, planned_on)
    roomy = [
        replace(plan, rows=plan.rows[: rooms[plan.wallet.id]])
        for plan in plans
        if rooms.get(plan.wallet.id, 0) > 0
    ]
    return (roomy, counts) if roomy else None


async def _rooms_once_mined(
    engine: Engine, chain: ChainConfig, plans: list[Planned], planned_on: dict[WalletId, Counts]
) -> tuple[dict[WalletId, Counts], dict[WalletId, int]]:
    """The lanes' counts and rooms once the node has answered a step's sends, read again
    after short pauses (`_MINING_PAUSES_S`) while a lane's room is short of its plan and the
    node's pool still holds its nonces unmined: anvil answers a batch of sends before it has
    mined them (a window of 64 in ~5-30 ms, in bursts), and a room read then signed a short
    step, or none and ended the drain, while a step costs about the same whatever its size
    (docs/performance.md item 50). A chain with block times costs these few reads only."""
    config = engine.ports.config
    counts = await _counts(engine, chain, [plan.wallet.id for plan in plans])
    rooms = _rooms(config, plans, planned_on, counts)
    for pause_s in _MINING_PAUSES_S:
        short = [
            plan.wallet.id
            for plan in plans
            if plan.wallet.id in rooms
            and rooms[plan.wallet.id] < len(plan.rows)
            and counts[plan.wallet.id].pending > counts[plan.wallet.id].mined
        ]
        if not short:
            break
        await asyncio.sleep(pause_s)
        fresh = await _counts(engine, chain, short)
        if not fresh:  # the node did not answer: no more reads, the rooms stay as they were
            break
        counts |= fresh
        rooms = _rooms(config, plans, planned_on, counts)
    return counts, rooms


def _rooms(
    config: EngineConfig,
    plans: Sequence[Planned],
    planned_on: dict[WalletId, Counts],
    counts: dict[WalletId, Counts],
) -> dict[WalletId, int]:
    """Each planned lane's room on these counts (a lane without counts has none)."""
    rooms: dict[WalletId, int] = {}
    for plan in plans:
        now = counts.get(plan.wallet.id)
        if now is None:
            continue
        # planned_on holds each lane's next nonce (`_more_to_sign`), unless a foreign
        # transaction took nonces past it (signing fast-forwards to the node's pending count);
        # only what this step can sign is estimated (an estimate may fail a request)
        rooms[plan.wallet.id] = room_of(
            config, max(planned_on[plan.wallet.id].pending, now.pending), now
        )
    return rooms


def _more_to_sign(
    ready: Sequence[Ready], sent: Sequence[SentAttempt], *, full: int
) -> dict[WalletId, Counts]:
    """The lanes worth a next step, with the counts to plan it on: each signed a full window
    (so more may be queued) while the chain had mined every nonce before it (so it keeps up;
    on a chain that does not, the window is what limits and the next round is soon enough).
    They are planned as if the chain mined this step's nonces (mined = pending = the lane's
    next nonce); the real counts are read before the estimate, so a lane whose sends are still
    unmined then estimates and signs less, or nothing."""
    by_lane: dict[WalletId, list[int]] = {}
    tx_lane = {tx.id: r.wallet.id for r in ready for tx in r.rows}
    for one in sent:
        by_lane.setdefault(tx_lane[one.tx_id], []).append(one.nonce)
    more: dict[WalletId, Counts] = {}
    for r in ready:
        nonces = by_lane.get(r.wallet.id, [])
        if len(nonces) >= full and r.counts.mined >= min(nonces):
            more[r.wallet.id] = Counts(max(nonces) + 1, max(nonces) + 1)
    return more


def _failed(sending: Sending) -> bool:
    """The step's send or record already failed (it raises when the drain ends)."""
    task = sending.task
    return task.done() and (task.cancelled() or task.exception() is not None)


async def _finish(sending: Sequence[Sending], *, raise_first: bool = True) -> None:
    """Wait for every step's send and record; raise the first failure (the round logs it),
    log any other (all of them when the drain itself failed and raises its own)."""
    done = await asyncio.gather(*(s.task for s in sending), return_exceptions=True)
    failures = [result for result in done if isinstance(result, BaseException)]
    for other in failures[1:] if raise_first else failures:
        log.error("lanes.step_failed", error=repr(other)[:500])
    if failures and raise_first:
        raise failures[0]


async def _counts(
    engine: Engine, chain: ChainConfig, wallet_ids: list[WalletId]
) -> dict[WalletId, Counts]:
    """The lanes' counts on the node; the wallets' addresses are read once per process."""
    known = engine.state.addresses
    unknown = [wallet_id for wallet_id in wallet_ids if wallet_id not in known]
    if unknown:
        async with unit_of_work(engine.ports.sessionmaker) as session:
            known.update(await addresses_of(session, unknown))
    addresses = {w: known[w] for w in wallet_ids if w in known}
    return await lane_counts(engine.rpc(chain.chain_id), addresses)
