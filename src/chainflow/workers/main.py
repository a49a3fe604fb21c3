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
from chainflow.domain.transactions import repository
from chainflow.domain.transactions.config import ChainConfig
from chainflow.domain.transactions.drain.fee_floor import known_floor, refresh_market
from chainflow.infra.db.uow import read_only
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
from chainflow.workers.tracking import track, track_alone
from chainflow.workers.unreadable import recheck_unreadable
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
        engine.state.signal_sent = functools.partial(signals.publish_soon, sent=True)
        loops.append(
            signals.listen(engine.hear, stop, on_come=engine.wake, on_sent=engine.hear_sends)
        )
    if roster is not None:
        engine.state.roster = roster.workers
        engine.state.reread = roster.reread
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
    wakeup, look = engine.wakeup(chain_id), engine.look(chain_id)
    engine.state.paces[chain_id] = pace
    while not stop.is_set():
        wakeup.clear()  # a doorbell from now on starts another round right after this one
        look.clear()  # sends heard from now on are looked at after this round
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
            pace.stop_alone()
            await wait_any(stop, wakeup, timeout_s=min(pace.poll_s * 2 ** min(failures, 6), 5.0))
            continue
        pace.note(done, now=time.monotonic())
        if done.signed:
            continue  # there may be more: the next round at once
        await _between_rounds(engine, chain_id, stop, pace)


async def _between_rounds(engine: Engine, chain_id: int, stop: asyncio.Event, pace: Pace) -> None:
    """Wait for the chain's next round. Another worker's sends heard meanwhile, while this
    loop only tracks (pace.py), get a tracking pass alone, and the wait then starts again:
    one wallet's drain signals once per step of <= 64, and a round per step cost that worker
    a chain row, the lanes with queued work and placement read for nothing (item 49)."""
    wakeup, look = engine.wakeup(chain_id), engine.look(chain_id)
    while True:
        wait_s = max(pace.poll_s, min(pace.wait_s(), _until_schedules(engine, chain_id)))
        await wait_any(stop, wakeup, look, timeout_s=wait_s)
        now = time.monotonic()
        if stop.is_set() or wakeup.is_set() or not look.is_set():
            return
        look.clear()
        if not pace.tracks_alone(now) or _until_schedules(engine, chain_id) <= 0.0:
            return
        await track_alone(engine, chain_id, pace)


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
    await recheck_unreadable(engine, chain_id)  # no statement unless a key failed to decrypt
    # Reads only: no DB transaction of their own (no BEGIN and COMMIT round trips on
    # PostgreSQL, every round of every chain; docs/performance.md item 28).
    async with read_only(ports.sessionmaker) as session:
        # The tracker lease is judged on the clock it was written on (the server's on
        # PostgreSQL), read with the chain: a host clock behind kept a dead owner's lease live.
        row, lease_now = await chains.get_chain_at_lease_clock(session, chain_id)
        chain = ChainConfig.of(row)
        tracker_live = row.tracker_lease_until is not None and row.tracker_lease_until > lease_now
        # Another live process holds the tracker lease: taking it would update no row.
        tracker_held = row.tracker_owner not in (None, ports.owner) and tracker_live
        floor = known_floor(state.fees, chain)
        workers = engine.workers(chain_id)
        # Who holds the lanes is read whenever a roster is kept, also by a worker that sees
        # itself alone: lanes held elsewhere tell it the roster it read is out of date.
        holders = repository.LaneHolders() if engine.state.roster is not None else None
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
        track(engine, chain, held=tracker_held, sent=sent, drained=drained)
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
        took=len(lanes),
        left=len(state.placing[chain_id].left) + len(unsignable) if holders is not None else 0,
        chain=chain,
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
