"""The outbox loop of a worker process: sequence committed events promptly, prune old ones.

Every worker runs it; the sequencers of several processes take turns on one lock, so any
number of workers is safe, and one alone keeps up (docs/events.md).
"""

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.clock import utcnow
from chainflow.core.logging import get_logger
from chainflow.domain.events import repository, sequencer
from chainflow.domain.events.wakeups import appended, sequenced
from chainflow.domain.transactions.state import TERMINAL_STATUSES
from chainflow.infra.db.uow import unit_of_work
from chainflow.workers.waiting import wait_any

log = get_logger(__name__)
# After a pass, wait at least this long before the next: every round of every chain commits
# events, and a pass costs a short transaction (lock, one UPDATE) whatever it numbers
# (~1.5 ms of CPU). 8 wallets x 100 transfers, worker CPU per transaction over main: +1.5 ms
# at 20 ms; at 250 ms (events are still numbered well within a second of their commit) one
# pass numbers the events of many commits.
_MIN_GAP_S = 0.25
# A transaction whose latest event is one of these takes no more events (state.py: the
# terminal statuses take no event), so pruning may take all of its events.
FINAL_TX_EVENTS = tuple(sorted(f"transaction.{status.value}" for status in TERMINAL_STATUSES))


@dataclass(frozen=True)
class OutboxConfig:
    """How often the outbox is sequenced when no wake-up comes, and how long events live."""

    poll_s: float = 0.25
    retention_days: float = 30.0
    prune_every_s: float = 60.0
    prune_batch: int = 1000


async def run_outbox(
    sessionmaker: async_sessionmaker[AsyncSession], stop: asyncio.Event, config: OutboxConfig
) -> None:
    """Sequence and prune until `stop`; a failed pass is retried at the next poll."""
    wake = asyncio.Event()
    unsubscribe = appended.subscribe(wake.set)
    loop = asyncio.get_running_loop()
    next_prune = loop.time()
    try:
        while not stop.is_set():
            wake.clear()
            try:
                if await sequence_all(sessionmaker):
                    sequenced.ring()
                if loop.time() >= next_prune:
                    next_prune = loop.time() + config.prune_every_s
                    await prune_old(sessionmaker, config)
            except Exception as exc:  # the database is back at the next poll, or it is not
                log.warning("events.sequence_failed", error=repr(exc)[:300])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=_MIN_GAP_S)
            await wait_any(stop, wake, timeout_s=config.poll_s)
    finally:
        unsubscribe()


async def sequence_all(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Sequence every committed event, a batch per short DB transaction; return how many."""
    total = 0
    while True:
        async with unit_of_work(sessionmaker) as session:
            count = await sequencer.sequence_pending(session)
        total += count
        if count < sequencer.BATCH:
            return total


async def prune_old(sessionmaker: async_sessionmaker[AsyncSession], config: OutboxConfig) -> int:
    """Delete the events older than the retention, in bounded batches; return how many."""
    before = utcnow() - timedelta(days=config.retention_days)
    total = 0
    while True:
        async with unit_of_work(sessionmaker) as session:
            count = await repository.prune(
                session, before=before, limit=config.prune_batch, final_types=FINAL_TX_EVENTS
            )
        total += count
        if count < config.prune_batch:
            if total:
                log.info("events.pruned", count=total, before=before.isoformat())
            return total
