"""A chain's tracking in a worker's loop: the tracker lease, the passes beside a round's
drains or alone between rounds (pace.py), and the chain's readings for the metrics."""

import asyncio
import time

from chainflow.core.logging import get_logger
from chainflow.domain.chains import service as chains
from chainflow.domain.transactions import readings
from chainflow.domain.transactions.config import ChainConfig
from chainflow.domain.wallets import low_balance
from chainflow.infra.db.uow import engine_of, read_only, single_statements, unit_of_work
from chainflow.workers.engine import Engine
from chainflow.workers.pace import Pace
from chainflow.workers.track import track_chain
from chainflow.workers.waiting import wait_any

log = get_logger(__name__)
# The chain's head and its lanes' nonces and balances, for the metrics: two calls per lane,
# so not every round (issue 18).
_READ_EVERY_S = 5.0


async def track(
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
    tracked = await track_chain(engine, chain, until=leased_at + ports.config.tracker_lease_s)
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
        renewed_at = time.monotonic()
        if not await _renew_tracker_lease(engine, chain):
            return tracked
        lease_s = engine.ports.config.tracker_lease_s
        tracked += await track_chain(engine, chain, until=renewed_at + lease_s)


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


async def track_alone(engine: Engine, chain_id: int, pace: Pace) -> None:
    """One tracking pass without a round (the lease renewed first, as in a round); a failure
    or the lease lost sends the loop back to whole rounds."""
    if pace.chain is None:  # pace.tracks_alone checked it; a round reads the chain
        pace.stop_alone()
        return
    try:
        leased, tracked = await track(engine, pace.chain, held=False)
    except Exception as exc:  # the next round tracks again
        log.error("engine.track_failed", chain_id=chain_id, error=repr(exc)[:500])
        leased, tracked = False, 0
    pace.note_pass(tracked)
    if not leased:
        pace.stop_alone()
