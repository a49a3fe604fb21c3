"""A lane whose chain nonce fell below every nonce it has in flight (no DB, no RPC).

A reorg deeper than the chain's `confirmations` (which takes confirmed requests off the
chain), a node reset, or the key's account nonce moved back (anvil_setNonce) leaves the
node's pending count below the lowest nonce the lane has in flight, and no request of ours
in flight holds the nonces between: they belong to terminal requests, or to none. Nothing the
engine holds can fill them, so the requests above them cannot be mined; a bump only raised
their fees up to the cap, round after round (lifecycle audit, 2026-12-07). Seen on two
passes in a row (not one: a send may be landing), the lane is shown as `nonce_gap` and its
requests are neither bumped nor cancelled, only re-sent as signed (same bytes: they wait in
the node's pool); bumping resumes once the chain's count reaches the lowest nonce again.
The confirmed requests' bytes are never re-sent by themselves (README "Operating Chainflow").
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from chainflow.core.logging import get_logger
from chainflow.core.types import WalletId
from chainflow.domain.transactions.rows import InFlight

log = get_logger(__name__)


@dataclass(frozen=True)
class Gap:
    wallet_id: WalletId
    address: str
    chain_nonce: int  # the node's pending count
    lowest: int  # the lowest nonce the lane has in flight


@dataclass
class GapMemory:
    """What the tracker remembers of gaps between passes (judge.TrackerMemory holds it)."""

    # Lanes seen gapped at the last pass, not yet shown: shown if the next pass sees it too.
    seen: set[WalletId] = field(default_factory=set)
    # Lanes shown as `nonce_gap` (set by this process, or found so when its memory began).
    shown: set[WalletId] = field(default_factory=set)
    # Whether `shown` was read from the lanes: once per memory (workers/track.py), so that a
    # lane shown by a process that lost the chain's lease is cleared by the next holder.
    loaded: bool = False


@dataclass(frozen=True)
class GapChanges:
    """What to write on the lanes after a pass: gaps to show, lanes to clear."""

    found: tuple[Gap, ...] = ()
    cleared: tuple[WalletId, ...] = ()


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
    rows: Sequence[InFlight], pending: Mapping[str, int], memory: GapMemory, *, chain_id: int
) -> GapChanges:
    """Which lanes to show as `nonce_gap` (gapped at this pass and the one before, logged
    once per occurrence) and which to clear: not gapped now, with their count read, or with
    nothing in flight any more. A lane whose count was not read this pass stays as it is.
    Its bumps and cancels are held from the first sight (decisions.decide, Observed.gapped):
    a bump held one pass costs nothing, one signed for a nonce no block can hold raises the
    request's fees for good."""
    now = find_gaps(rows, pending)
    found = [g for w, g in now.items() if w in memory.seen and w not in memory.shown]
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
    cleared = [w for w in memory.shown if w not in now and (w in read or w not in in_flight)]
    for wallet_id in cleared:
        log.info("lane.nonce_gap_cleared", wallet_id=str(wallet_id), chain_id=chain_id)
    memory.seen = set(now)
    memory.shown = (memory.shown - set(cleared)) | {gap.wallet_id for gap in found}
    return GapChanges(tuple(found), tuple(cleared))
