"""Lane placement: which of a chain's lanes with work one worker's round drains when other
live workers serve the chain (issue 17; docs/performance.md item 40).

Without it the first worker whose round saw a burst claimed every lane with work and kept
them (the lane lease is renewed every round): one process did every drain while the others
idled. Now a round takes at most its share of the chain's lanes with work (lanes / live
workers, the workers known from their heartbeats: infra/queue/roster.py), keeping the lanes
it holds first, then the free lanes the live workers' rendezvous hash gives it, and leaves
the rest: it frees the leases of those it held and signals the others to come at once.
The holder of the chain's tracker lease takes none: the others share the lanes (lanes / (live
workers - 1)), so with two workers one drains and the other tracks. Its tracking passes
(the record of a window's receipts: ~17 ms) no longer hold a lane's next step back on one
event loop, and the drains are not split between two processes whose rounds each pay their
fixed costs for half the requests (single POSTs over 32 wallets: +0.2 ms of workers' CPU per
transaction when split in two, no gain in tx/s on 2 cores; item 40).

Liveness first: a lane left and still free `LEFT_FOR_S` later (the other worker is dead,
slow, or never came) is taken anyway, and the round then places nothing for `alone_for_s`
(it takes every lane, as a lone worker does). A worker that stays in the roster but never
drains (its loop or its node stuck) would make that a stall of every lane each lease, for
ever: each take-anyway in a row doubles `alone_for_s` (up to `ALONE_MAX_S`), and a lane left
that another worker really took (it shows up held elsewhere) ends the streak, and so does a
worker that joins (a new id in the roster: it would otherwise wait up to `ALONE_MAX_S`).

A lane whose signer is down here (issue 20: its token or KMS unreachable from this host, and
no health probe passed since, `Signers.can_sign`) is never this worker's: it is neither
taken nor left (no take-anyway brings it back here, it feeds no alone period), and its lease
is freed if held here, so that a worker whose signer works takes it at its next round. It
counts neither in this worker's share nor as work for its loop (`Placed.unsignable`). A lane
down on every worker stays free; each round only settles its requests without signing
(expiry, a disabled wallet's failures: drain/plan.settle_lanes).

The roster is read once a second (infra/queue/roster.py), so a worker that started or joined
is missed for up to a second, and a round that missed it took every lane: at the start of the
32-wallet batch run the tracker's holder drained a whole round of 2,048 while the other worker
idled ~1.3 s (docs/performance.md items 53 and 54). So a round that sees its worker alone but
finds lanes held elsewhere, or work worth placing, reads the roster again at once (at most
every 250 ms per chain, roster.py `REREAD_S`) and places with what it reads.

Lane leases still make one drainer per lane; the lane lock under them keeps nonces single-writer
whatever placement decides.
"""

import hashlib
import math
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chainflow.core.logging import get_logger, is_worth_logging
from chainflow.core.types import WalletId
from chainflow.domain.transactions import repository
from chainflow.domain.wallets import service as wallets
from chainflow.infra.db.uow import engine_of, single_statements

if TYPE_CHECKING:  # engine.py keeps each chain's Placing
    from chainflow.workers.engine import Engine

log = get_logger(__name__)
# How long a lane this worker left waits for another worker before this one takes it anyway.
# An idle live worker polls at least every second (CHAINFLOW_WORKER_IDLE_POLL_S) even if the
# signal is lost, and a busy one reads the lanes again at its next round (~0.1-0.7 s).
LEFT_FOR_S = 1.0
# Queued requests on the chain's lanes below which a round places nothing: each process's
# drains pay their own reads, node calls and commits, worth it only with work for several
# drains (main.py `_WORK_PER_DRAIN`).
WORTH_PLACING = 128
# The longest a round places nothing after lanes it left were taken anyway, however many times
# in a row nobody came: a worker that joins after a stuck one starts sharing within this.
ALONE_MAX_S = 120.0


@dataclass
class Placing:
    """What a chain's loop remembers of its placements between rounds (monotonic seconds)."""

    left: dict[WalletId, float] = field(default_factory=dict)  # lane → when first left
    alone_until: float = 0.0  # a lane left was not taken in time: no leaving before then
    taken_anyway: int = 0  # take-anyways in a row, no lane left taken by another since
    members: frozenset[str] = frozenset()  # the live workers of the last round placed
    down: frozenset[WalletId] = frozenset()  # lanes whose signer was down here last round
    release_failures: int = 0  # failed releases in a row


@dataclass(frozen=True)
class Placement:
    """A round's lanes: those it drains (with their counts) and those it leaves to others;
    `release`: the left lanes whose lease this process holds (freed so others take them);
    `down`: the lanes held here that it cannot sign (freed too, never left nor taken)."""

    take: dict[WalletId, int]
    left: list[WalletId] = field(default_factory=list)
    release: list[WalletId] = field(default_factory=list)
    down: list[WalletId] = field(default_factory=list)  # held here, its signer down here


@dataclass(frozen=True)
class Placed:
    """What a round of `place_round` drains (`take`), and the lanes offered to it that it
    cannot sign (`unsignable`): no drain work (the loop idles as with none), their requests
    only settled without signing (drain/plan.settle_lanes)."""

    take: dict[WalletId, int]
    unsignable: list[WalletId] = field(default_factory=list)


def place(
    lanes: Mapping[WalletId, int],
    *,
    here: Collection[WalletId],
    elsewhere: Mapping[WalletId, int],
    workers: Sequence[str],
    owner: str,
    tracker: str | None,
    memory: Placing,
    now: float,
    alone_for_s: float,
    unsignable: Collection[WalletId] = frozenset(),
) -> Placement:
    """Place a round: `lanes` it may drain (free, or held `here`), with their queued requests,
    `elsewhere` those that other live processes hold, `workers` the live workers serving the
    chain (`owner` among them), `tracker` the live holder of the chain's tracker lease,
    `unsignable` the lanes whose signer is down here (freed for the others when more
    workers serve the chain)."""
    if len(workers) <= 1:  # the live workers it last placed with are kept (`members`)
        memory.left.clear()
        return Placement(dict(lanes))  # alone: nobody else could sign a lane down here
    if not memory.members.issuperset(workers):
        memory.taken_anyway, memory.alone_until = 0, 0.0  # a newcomer: share with it now
    memory.members = frozenset(workers)
    # Lanes it cannot sign are neither taken nor left, nor in its share's count (they would
    # make it take lanes another worker expected to keep); those held here are freed.
    down = [lane for lane in lanes if lane in unsignable and lane in here]
    lanes = {lane: count for lane, count in lanes.items() if lane not in unsignable}
    work = sum(lanes.values()) + sum(elsewhere.values())
    if now < memory.alone_until or work < WORTH_PLACING:
        memory.left.clear()
        return Placement(dict(lanes), down=down)
    if any(lane in elsewhere for lane in memory.left):
        memory.taken_anyway = 0  # another worker came for a lane left: placement works
    if any(now - memory.left.get(lane, now) >= LEFT_FOR_S for lane in lanes):
        memory.left.clear()  # left and nobody came: take them all, for a lease (or longer)
        memory.alone_until = now + min(alone_for_s * 2**memory.taken_anyway, ALONE_MAX_S)
        memory.taken_anyway = min(memory.taken_anyway + 1, 16)
        return Placement(dict(lanes), down=down)
    total = len(lanes) + sum(1 for count in elsewhere.values() if count)
    # The tracker's holder leaves every lane to the others (with two workers: one drains, one
    # tracks), which share them and rank them among themselves.
    drainers = [worker for worker in workers if worker != tracker] or list(workers)
    share = 0 if owner not in drainers else math.ceil(total / len(drainers))
    order = sorted(lanes, key=lambda lane: (lane not in here, *_rank(lane, drainers, owner)))
    taken = order[:share]
    left = order[share:]
    memory.left = {lane: memory.left.get(lane, now) for lane in left}
    return Placement(
        {lane: lanes[lane] for lane in taken},
        left=left,
        release=[lane for lane in left if lane in here],
        down=down,
    )


async def place_round(
    engine: "Engine",
    chain_id: int,
    lanes: dict[WalletId, int],
    holders: repository.LaneHolders,
    *,
    workers: Sequence[str],
    tracker: str | None,
) -> Placed:
    """The lanes a round of `engine` drains when other live workers serve the chain: the
    leases of the lanes it leaves, or cannot sign, are freed and the others called to take
    them."""
    ports, state = engine.ports, engine.state
    if len(workers) <= 1 and (
        any(holders.elsewhere.values()) or sum(lanes.values()) >= WORTH_PLACING
    ):
        workers = await engine.workers_now(chain_id)  # it may not be alone: item 54
    memory = state.placing.setdefault(chain_id, Placing())
    unsignable = frozenset(w for w in lanes if not state.signers.can_sign(w))
    placement = place(
        lanes,
        here=holders.here,
        elsewhere=holders.elsewhere,
        workers=workers,
        owner=ports.owner,
        tracker=tracker,
        memory=memory,
        now=time.monotonic(),
        alone_for_s=ports.config.lane_lease_s,
        unsignable=unsignable,
    )
    _log_down(chain_id, [w for w in placement.down if w not in memory.down])
    memory.down = unsignable
    freed = placement.release + placement.down
    release = sorted(w for w in freed if (w, chain_id) not in state.draining)
    if release:
        try:
            async with single_statements(engine_of(ports.sessionmaker)) as db:
                await wallets.release_lanes(db, release, chain_id, owner=ports.owner)
            memory.release_failures = 0
        except Exception as exc:  # only an optimisation: the leases lapse, the others take them
            memory.release_failures += 1
            failures = memory.release_failures
            if is_worth_logging(failures):
                log.warning(
                    "lanes.release_failed",
                    chain_id=chain_id,
                    lanes=len(release),
                    error=repr(exc)[:300],
                    failures=failures,
                )
    if placement.left or release:
        engine.call_others(chain_id)
    return Placed(placement.take, sorted(w for w in unsignable if w not in placement.take))


def _log_down(chain_id: int, lanes: Sequence[WalletId]) -> None:
    """Once per outage: the lanes this worker leaves because it cannot sign for them."""
    for lane in lanes:
        log.warning("lane.left_signer_down", wallet_id=str(lane), chain_id=chain_id)


def _rank(lane: WalletId, workers: Sequence[str], owner: str) -> tuple[bool, int]:
    """Where a free lane comes in `owner`'s order: the lanes the rendezvous hash gives it
    (every worker computes the same from the same roster, so free lanes fall apart instead of
    each worker reaching for the same ones), those its worker would take first first; then
    the others' lanes, those their worker would take last first (with two workers, whatever
    one takes beyond its own lanes is what the other leaves)."""
    weight, preferred = max((_weight(worker, lane), worker) for worker in workers)
    if preferred == owner:
        return False, -weight
    return True, weight


def _weight(worker: str, lane: WalletId) -> int:
    digest = hashlib.blake2b(worker.encode() + lane.bytes, digest_size=8).digest()
    return int.from_bytes(digest, "big")
