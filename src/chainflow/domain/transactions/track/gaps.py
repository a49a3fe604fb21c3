"""A lane whose chain nonce fell below every nonce it has in flight (no DB, no RPC).

A reorg deeper than the chain's `confirmations` (which takes confirmed requests off the
chain), a node reset, or the key's account nonce moved back (anvil_setNonce) leaves the
node's pending count below the lowest nonce the lane has in flight, and no request of ours
in flight holds the nonces between: they belong to terminal requests, or to none. Nothing the
engine holds can fill them, so the requests above them cannot be mined; a bump only raised
their fees up to the cap, round after round (lifecycle audit, 2026-12-07). Seen on every
pass for GAP_HOLD_S at least, two passes or more (not one: a send may be landing, or the
endpoint that answered may be a replica a block or two behind, a fallback after failover, an
L2 replica without a mempool), the lane is shown as `nonce_gap` and its requests are neither
bumped nor cancelled, only re-sent as signed (same bytes: they wait in the node's pool);
bumping resumes, and the reason clears, at the first pass that reads the lane's count at its
lowest nonce again (or finds nothing in flight). A pass whose head is below the highest head
this memory has seen (a lagging endpoint) judges no gap.
The confirmed requests' bytes are never re-sent by themselves (README "Operating Chainflow").
"""

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from chainflow.core.logging import get_logger
from chainflow.core.types import WalletId
from chainflow.domain.transactions.rows import InFlight

log = get_logger(__name__)

# How long a gap must be seen, on every pass, before its lane's bumps are held and it is
# shown: longer than a replica lags, or a fallback endpoint takes to catch up (blocks of a
# few seconds on the chains served); passes follow each drain's send, milliseconds apart.
GAP_HOLD_S = 30.0


@dataclass(frozen=True)
class Gap:
    wallet_id: WalletId
    address: str
    chain_nonce: int  # the node's pending count
    lowest: int  # the lowest nonce the lane has in flight


@dataclass
class GapMemory:
    """What the tracker remembers of gaps between passes (judge.TrackerMemory holds it)."""

    # Lanes gapped on every pass since: when first seen (clock), and on how many passes.
    seen: dict[WalletId, tuple[float, int]] = field(default_factory=dict)
    # Lanes gapped for GAP_HOLD_S on 2 passes or more: their bumps and cancels are held.
    held: set[WalletId] = field(default_factory=set)
    # Lanes shown as `nonce_gap` (set by this process, or found so when read from the lanes).
    shown: set[WalletId] = field(default_factory=set)
    # When `shown` was last read from the lanes (workers/track.py): at a memory's first pass,
    # then every GAP_HOLD_S, so that a lane shown by a process that lost the chain's lease
    # (its write landing after this memory read them) is cleared by this holder all the same.
    loaded_at: float | None = None
    # The highest head a pass has read: a pass below it asked a lagging endpoint. Since when
    # passes have read a head below it: after GAP_HOLD_S the lower head is taken as the new
    # top (a node reset, or one bogus high answer, would otherwise stop every judgement for
    # good: gaps unseen, held lanes never bumped nor cleared; review).
    top_head: int = -1
    below_since: float | None = None
    clock: Callable[[], float] = time.monotonic  # tests drive it

    def load_due(self) -> bool:
        return self.loaded_at is None or self.clock() - self.loaded_at >= GAP_HOLD_S

    def loaded(self, shown: Sequence[WalletId]) -> None:
        self.shown = set(shown)
        self.loaded_at = self.clock()


@dataclass(frozen=True)
class GapChanges:
    """What to write on the lanes after a pass (gaps to show, lanes to clear), and the
    addresses whose bumps and cancels the pass holds (Observed.gapped)."""

    found: tuple[Gap, ...] = ()
    cleared: tuple[WalletId, ...] = ()
    held: frozenset[str] = frozenset()


def find_gaps(rows: Sequence[InFlight], pending: Mapping[str, int]) -> dict[WalletId, Gap]:
    """The lanes whose node counts fewer nonces, its pool included (`pending`), than their
    lowest nonce in flight. Rows come lowest nonce first per wallet, and a page cut by the
    tracker's limit cuts a wallet's highest nonces, never its lowest (repository.tracked)."""
    lowest: dict[WalletId, tuple[int, str]] = {}
    for tx in rows:
        known = lowest.get(tx.wallet_id)
        if tx.nonce is not None and (known is None or tx.nonce < known[0]):
            lowest[tx.wallet_id] = (tx.nonce, tx.from_address)
    found: dict[WalletId, Gap] = {}
    for wallet_id, (nonce, address) in lowest.items():
        count = pending.get(address)
        if count is not None and count < nonce:
            found[wallet_id] = Gap(wallet_id, address, count, nonce)
    return found


def note_gaps(
    rows: Sequence[InFlight],
    pending: Mapping[str, int],
    memory: GapMemory,
    *,
    chain_id: int,
    head: int | None,
    complete: bool,
    idle: Collection[WalletId] = (),
) -> GapChanges:
    """Which lanes to hold and show as `nonce_gap` (gapped on every pass for GAP_HOLD_S, on
    two passes at least; logged once per occurrence) and which to clear: read and not gapped
    now, or with nothing in flight (`complete`: the page holds every request in flight, not
    one cut by the tracker's limit; `idle`: lanes the caller found with nothing in flight
    off a cut page). A lane not read this pass stays as it is; a pass whose
    `head` is below the highest one seen judges nothing (a lagging endpoint), unless heads
    have stayed below it for GAP_HOLD_S (a node reset): that head is then the top."""
    at = memory.clock()
    if head is not None and head < memory.top_head:
        if memory.below_since is None:
            memory.below_since = at
        if at - memory.below_since < GAP_HOLD_S:
            return GapChanges(
                held=frozenset(tx.from_address for tx in rows if tx.wallet_id in memory.held)
            )
    if head is not None:
        memory.top_head, memory.below_since = head, None
    now = find_gaps(rows, pending)
    seen: dict[WalletId, tuple[float, int]] = {}
    for wallet_id in now:  # a lane this pass does not see starts again
        first, passes = memory.seen.get(wallet_id, (at, 0))
        seen[wallet_id] = (first, passes + 1)
    memory.seen = seen
    memory.held = {
        w for w, (first, passes) in memory.seen.items() if passes >= 2 and at - first >= GAP_HOLD_S
    }
    found = [now[w] for w in sorted(memory.held) if w not in memory.shown]
    for gap in found:
        log.error(
            "lane.nonce_gap",
            wallet_id=str(gap.wallet_id),
            wallet=gap.address,
            chain_id=chain_id,
            chain_nonce=gap.chain_nonce,
            lowest_in_flight=gap.lowest,
        )
    read = {tx.wallet_id for tx in rows if tx.from_address in pending}
    in_flight = {tx.wallet_id for tx in rows}
    cleared = [
        w
        for w in sorted(memory.shown)
        if w not in now and (w in read or w in idle or (complete and w not in in_flight))
    ]
    for wallet_id in cleared:
        log.info("lane.nonce_gap_cleared", wallet_id=str(wallet_id), chain_id=chain_id)
    memory.shown = (memory.shown - set(cleared)) | memory.held
    held = frozenset(now[w].address for w in memory.held)
    return GapChanges(tuple(found), tuple(cleared), held)
