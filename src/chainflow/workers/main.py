"""Worker loops: per chain, drain every lane with queued requests, then track the chain.

The database is the truth: each round reads what is queued or in flight, so a lost doorbell
or a killed process loses nothing; the next round (here or in another worker) picks it up.
"""

import asyncio
import contextlib
import functools
import math
import time
from collections.abc import Callable, Coroutine, Sequence

from chainflow.core.clock import utcnow
from chainflow.core.logging import get_logger, is_worth_logging
from chainflow.core.types import WalletId
from chainflow.domain.chains import service as chains
from chainflow.domain.transactions import readings, repository
from chainflow.domain.transactions.config import ChainConfig
from chainflow.domain.transactions.drain.fee_floor import known_floor, refresh_market
from chainflow.domain.wallets import low_balance
from chainflow.infra.db.uow import engine_of, read_only, single_statements, unit_of_work
from chainflow.infra.queue import JobQueue, chain_queue
from chainflow.infra.queue.roster import RedisRoster
from chainflow.infra.queue.signals import RedisSignals
from chainflow.workers.drain import STEPS_ALONE, drain_lanes, settle_unsignable
from chainflow.workers.engine import Engine
from chainflow.workers.jobs import handler_for
from chainflow.workers.outbox import run_outbox
from chainflow.workers.pace import Pace, Round
from chainflow.workers.placement import place_round
from chainflow.workers.schedules import run_schedules
from chainflow.workers.track import track_chain
from chainflow.workers.waiting import wait_any
from chainflow.workers.webhooks import run_webhooks

log = get_logger(__name__)
# A doorbell job only sets an event, so one at a time is enough. Each free slot costs a
# BullMQ moveToActive script call whenever a job arrives: with 16 slots, 17 Lua calls per
# doorbell (Redis commandstats), the largest part of a worker's Redis traffic.
_JOBS_AT_ONCE = 1
# A round with much queued work splits its lanes into drains that run at once: while one
# waits on the node or the database, another signs (32 wallets, batch calls: 984-1,072 tx/s
# as one drain, 1,127-1,150 as four). A round with little work stays one drain: each drain
# pays its own reads, locks and node calls (one request per call: 2.5 vs 1.9 ms of worker CPU
# per transaction when split).
_DRAINS_AT_ONCE = 4
_WORK_PER_DRAIN = 128  # requests a round can sign, per extra drain
_MAX_LANES_PER_DRAIN = 64  # beyond 4 x 64 lanes, more drains rather than bigger ones
# The chain's head and its lanes' nonces and balances, for the metrics: two calls per lane,
# so not every round (issue 18).
_READ_EVERY_S = 5.0
# How often a worker reads the chain registry (one small query): a chain added or enabled
# through the API is served, doorbells included, this soon after, without a restart.
REGISTRY_REFRESH_S = 0.5
# The longest wait of a chain's loop after empty rounds (CHAINFLOW_WORKER_IDLE_POLL_S).
IDLE_POLL_S = 1.0


async def run_engine(
    engine: Engine,
    stop: asyncio.Event,
    *,
    poll_s: float = 0.1,
    queue: JobQueue | None = None,
    signals: RedisSignals | None = None,
    refresh_s: float = REGISTRY_REFRESH_S,
    idle_poll_s: float = IDLE_POLL_S,
    roster: RedisRoster | None = None,
) -> None:
    """Run one loop per chain, the outbox's sequencer, the doorbell consumer if a queue is
    given, the signal listener if `signals` is and the heartbeat if `roster` is, until
    `stop`. With a roster, a round shares its chain's lanes with the other live workers
    (placement.py); without one (embedded mode) it drains every lane it may.

    A chain's loop waits `poll_s` between rounds, and after empty rounds up to `idle_poll_s`
    (pace.py). A chain enabled in the registry later gets its loop and its doorbell consumer
    within `refresh_s`, without a restart.
    """
    pace = functools.partial(
        Pace, poll_s=poll_s, idle_poll_s=idle_poll_s, lane_lease_s=engine.config.lane_lease_s
    )
    loops = [_chain_loop(engine, cid, stop, pace()) for cid in engine.ports.rpc]
    loops.append(run_outbox(engine.ports.sessionmaker, stop, engine.ports.outbox))  # issue 16
    if queue is not None and engine.ports.rpc:
        loops.append(_consume_doorbells(engine, queue, list(engine.ports.rpc), stop))
    if signals is not None:
        engine.state.signal = signals.publish_soon
        engine.state.call = functools.partial(signals.publish_soon, come=True)
        loops.append(signals.listen(engine.hear, stop, on_come=engine.wake))
    if roster is not None:
        engine.state.roster = roster.workers
        loops.append(roster.beat(lambda: list(engine.ports.rpc), stop))
    if engine.ports.webhooks is not None:
        loops.append(run_webhooks(engine.ports.webhooks, stop))
    if engine.ports.refresh_chains is not None:
        loops.append(_follow_registry(engine, stop, pace=pace, refresh_s=refresh_s, queue=queue))
    await asyncio.gather(*loops)


def _consume_doorbells(
    engine: Engine, queue: JobQueue, chain_ids: Sequence[int], stop: asyncio.Event
) -> Coroutine[None, None, None]:
    queues = [chain_queue(cid) for cid in chain_ids]
    return queue.run_worker(queues, handler_for(engine), concurrency=_JOBS_AT_ONCE, stop=stop)


async def _follow_registry(
    engine: Engine,
    stop: asyncio.Event,
    *,
    pace: Callable[[], Pace],
    refresh_s: float,
    queue: JobQueue | None,
) -> None:
    refresh = engine.ports.refresh_chains
    assert refresh is not None  # noqa: S101 - checked by the caller
    started: list[asyncio.Task[None]] = []
    failures = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=refresh_s)
        if stop.is_set():
            break
        try:
            added = await refresh()
            failures = 0
        except Exception as exc:  # the registry is read again next time
            failures += 1
            if is_worth_logging(failures):
                log.warning(
                    "engine.registry_refresh_failed", error=repr(exc)[:300], failures=failures
                )
            continue
        for chain_id in added:
            log.info("engine.chain_added", chain_id=chain_id)
            started.append(asyncio.create_task(_chain_loop(engine, chain_id, stop, pace())))
            if queue is not None:
                doorbells = _consume_doorbells(engine, queue, [chain_id], stop)
                started.append(asyncio.create_task(doorbells))
    await asyncio.gather(*started)


async def _chain_loop(engine: Engine, chain_id: int, stop: asyncio.Event, pace: Pace) -> None:
    failures = 0
    wakeup = engine.wakeup(chain_id)
    engine.state.paces[chain_id] = pace
    while not stop.is_set():
        wakeup.clear()  # a doorbell from now on starts another round right after this one
        try:
            done = await run_round(engine, chain_id)
            failures = 0
        except Exception as exc:  # a bad round must not kill the loop; the next one retries
            failures += 1
            if is_worth_logging(failures):
                log.error(
                    "engine.round_failed",
                    chain_id=chain_id,
                    error=repr(exc)[:500],
                    failures=failures,
                )
            done = None
        if done is None:
            # Back off while the chain's node keeps failing: 0.1 s, doubling up to 5 s.
            wait_s = min(pace.poll_s * 2 ** min(failures, 6), 5.0)
        else:
            pace.note(done, now=time.monotonic())
            if done.signed:
                continue  # there may be more: the next round at once
            wait_s = max(pace.poll_s, min(pace.wait_s(), _until_schedules(engine, chain_id)))
        await wait_any(stop, wakeup, timeout_s=wait_s)


def _until_schedules(engine: Engine, chain_id: int) -> float:
    """Seconds until the chain's next schedule pass is due: an idle loop's wait ends then, so
    due occurrences start no later than with a round every `poll_s`."""
    last = engine.state.schedules_read_at.get(chain_id)
    if last is None:
        return 0.0
    return max(0.0, last + engine.ports.schedules.poll_s - time.monotonic())


def drain_batches(queued: dict[WalletId, int], *, per_lane: int) -> list[list[WalletId]]:
    """The lanes of one round (queued requests per lane), split into the drains that run at
    once: one per `_WORK_PER_DRAIN` requests the round can sign (at most `per_lane` a lane),
    up to `_DRAINS_AT_ONCE`, and at most `_MAX_LANES_PER_DRAIN` lanes each."""
    lanes = list(queued)
    work = sum(min(count, per_lane) for count in queued.values())
    drains = min(_DRAINS_AT_ONCE, max(1, work // _WORK_PER_DRAIN), max(1, len(lanes)))
    size = min(_MAX_LANES_PER_DRAIN, math.ceil(len(lanes) / drains)) if lanes else 1
    return [lanes[i : i + size] for i in range(0, len(lanes), size)]


async def run_round(engine: Engine, chain_id: int) -> Round:
    """Drain every lane with work while tracking the chain once.

    Tracking runs beside the drains, not after them: a lane's room counts what the chain has
    mined, so a drain never waits for the tracker, and one process holding both a lane and
    the tracker lease sends its next window while it records the last one.
    """
    ports, state = engine.ports, engine.state
    started = time.monotonic()
    await _schedules(engine, chain_id)
    # Reads only: no DB transaction of their own (no BEGIN and COMMIT round trips on
    # PostgreSQL, every round of every chain; docs/performance.md item 28).
    async with read_only(ports.sessionmaker) as session:
        row = await chains.get_chain(session, chain_id, endpoints=False)
        chain = ChainConfig.of(row)
        tracker_live = row.tracker_lease_until is not None and row.tracker_lease_until > utcnow()
        # Another live process holds the tracker lease: taking it would update no row.
        tracker_held = row.tracker_owner not in (None, ports.owner) and tracker_live
        floor = known_floor(state.fees, chain)
        workers = engine.workers(chain_id)
        holders = repository.LaneHolders() if len(workers) > 1 else None
        queued = await repository.lanes_with_queued(
            session, chain_id, owner=ports.owner, now=utcnow(), floor=floor, holders=holders
        )
    # A lane whose requests all wait for the base fee to fall is not drained (the drain would
    # ask the node for its counts every round to sign nothing); the base fee is read again
    # (at most once a second: gas.market's cache) so that they go once it falls.
    lanes = {wallet_id: count for wallet_id, count in queued.items() if count}
    if len(lanes) < len(queued):
        await refresh_market(state.fees, engine.rpc(chain_id), chain)
    offered = len(lanes)
    unsignable: list[WalletId] = []
    if holders is not None:
        tracker = row.tracker_owner if tracker_live else None
        placed = await place_round(
            engine, chain_id, lanes, holders, workers=workers, tracker=tracker
        )
        lanes, unsignable = placed.take, placed.unsignable
        # No drain work: a lane down on every worker must not keep each loop polling at
        # poll_s for the whole outage (its requests are settled below, without signing)
        offered -= len(unsignable)

    # A round's only lane may go on in steps while the chain mines at once (drain.STEPS_ALONE)
    steps = STEPS_ALONE if len(lanes) == 1 else 1
    sent = asyncio.Event()  # a drain of this round sent and recorded its sends
    drained = asyncio.Event()  # every drain of this round is done

    async def drain(wallet_ids: Sequence[WalletId], *, settle: bool = False) -> int:
        try:
            if settle:  # lanes it cannot sign: expire and fail their requests only
                await settle_unsignable(engine, chain, wallet_ids)
                return 0
            signed = await drain_lanes(engine, chain, wallet_ids, steps=steps, recorded=sent.set)
        except Exception as exc:  # one batch's failure must not stop the others
            failures = state.drain_failures[chain_id] = state.drain_failures.get(chain_id, 0) + 1
            if is_worth_logging(failures):  # a failure that repeats every round is no news
                log.error(
                    "lanes.drain_failed",
                    chain_id=chain_id,
                    lanes=len(wallet_ids),
                    error=repr(exc)[:500],
                    failures=failures,
                )
            return 0
        state.drain_failures.pop(chain_id, None)
        if signed:
            sent.set()
        return signed

    tracking = asyncio.ensure_future(
        _track(engine, chain, held=tracker_held, sent=sent, drained=drained)
    )
    try:
        batches = drain_batches(lanes, per_lane=ports.config.batch_size)
        settles = [drain(unsignable, settle=True)] if unsignable else []
        signed = sum(await asyncio.gather(*(drain(batch) for batch in batches), *settles))
    except BaseException:
        tracking.cancel()
        raise
    finally:
        drained.set()
    leased, tracked = await tracking  # a tracking failure fails the round (the loop backs off)
    return Round(
        signed=signed,
        lanes=offered,
        leased=state.leased_at.get(chain_id, started - 1) >= started,
        tracking=leased,
        tracked=tracked,
    )


async def _schedules(engine: Engine, chain_id: int) -> None:
    """Due schedule occurrences become queued requests before the lanes are read, so they
    are signed in this round. A failure here must not stop the chain's drains."""
    failures = engine.state.schedule_failures
    try:
        await run_schedules(engine, chain_id)
    except Exception as exc:  # retried at the next pass: a run is committed whole or not at all
        count = failures[chain_id] = failures.get(chain_id, 0) + 1
        if is_worth_logging(count):
            log.error(
                "schedules.pass_failed", chain_id=chain_id, error=repr(exc)[:500], failures=count
            )
        return
    failures.pop(chain_id, None)


async def _track(
    engine: Engine,
    chain: ChainConfig,
    *,
    held: bool,
    sent: asyncio.Event | None = None,
    drained: asyncio.Event | None = None,
) -> tuple[bool, int]:
    """Track the chain if this process holds (or takes) its tracker lease; `held`: the chain's
    row, read this round, says another live process holds it. Returns (leased, requests
    looked at).

    While the round's drains run (`drained` not set), each time one of them has sent
    (`sent`), the tracker looks again once its pass is done, instead of at the next round:
    a round that signs thousands takes seconds, and its first drains' sends waited that
    long to be seen mined (docs/performance.md item 30). Each such pass renews the lease
    first (one UPDATE), so it has a whole lease like the first pass, and none starts past
    half the lease taken at the round's start."""
    ports = engine.ports
    leased = False
    leased_at = time.monotonic()
    if not held:
        # One UPDATE, which commits on its own (no BEGIN and COMMIT round trips on PostgreSQL).
        leased = await _renew_tracker_lease(engine, chain)
    if not leased:
        readings.forget_chain(chain.chain_id)  # the holder reports the chain's readings (issue 18)
        # What this process's tracker remembered of the chain (a foreign nonce's first sight)
        # is stale once another process tracked it: a grace period counted from a sight
        # before a spell elsewhere would fail a request on one read when the lease comes back.
        engine.state.tracking.pop(chain.chain_id, None)
        return False, 0
    tracked = await track_chain(engine, chain)
    if sent is not None and drained is not None:
        tracked += await _track_while_draining(
            engine, chain, sent, drained, until=leased_at + ports.config.tracker_lease_s / 2
        )
    if readings.is_due(chain.chain_id, every_s=_READ_EVERY_S):
        await _note_readings(engine, chain)
    return True, tracked


async def _track_while_draining(
    engine: Engine, chain: ChainConfig, sent: asyncio.Event, drained: asyncio.Event, *, until: float
) -> int:
    """More tracking passes while the round's drains run: one after each drain that sent
    (sends that land during a pass are seen by the next one). The drains' last sends are
    left to the next round's pass, which starts at once after a round that signed."""
    tracked = 0
    while True:
        if not sent.is_set():
            await wait_any(sent, drained, timeout_s=max(0.0, until - time.monotonic()))
        if drained.is_set() or not sent.is_set() or time.monotonic() >= until:
            return tracked
        sent.clear()
        # A pass may take as long as its slowest RPC or signer call: begun on what is left of
        # the round's lease it could outlast it, and another worker then track (and bump)
        # the chain beside it (review).
        if not await _renew_tracker_lease(engine, chain):
            return tracked
        tracked += await track_chain(engine, chain)


async def _renew_tracker_lease(engine: Engine, chain: ChainConfig) -> bool:
    ports = engine.ports
    async with single_statements(engine_of(ports.sessionmaker)) as db:
        return await chains.take_tracker_lease(
            db, chain.chain_id, owner=ports.owner, ttl_s=ports.config.tracker_lease_s
        )


async def _note_readings(engine: Engine, chain: ChainConfig) -> None:
    balances = await _read_chain(engine, chain)
    if balances is None:
        return
    try:
        async with unit_of_work(engine.ports.sessionmaker) as session:
            await low_balance.note_balances(session, chain.chain_id, balances)  # issue 16
    except Exception as exc:  # judged again at the next reading
        log.warning("wallet.low_balance_failed", chain_id=chain.chain_id, error=repr(exc)[:300])


async def _read_chain(engine: Engine, chain: ChainConfig) -> dict[str, int] | None:
    """The chain's head and lanes into the metrics; the lanes' balances, None if unread."""
    try:
        async with read_only(engine.ports.sessionmaker) as session:
            lanes = await readings.lanes_of(session, chain.chain_id)
        return await readings.read_chain(engine.rpc(chain.chain_id), chain.chain_id, lanes)
    except Exception as exc:  # metrics only: the head's age shows the chain is not read
        log.debug("chain.read_failed", chain_id=chain.chain_id, error=repr(exc)[:300])
        return None
