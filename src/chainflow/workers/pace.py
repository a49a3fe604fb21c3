"""How long a chain's loop waits between rounds, and whether other workers' signals are for it.

An empty round (no lane with work, nothing in flight to track) cost a worker ~6 ms of CPU and
seven statements; the loop of a worker that holds neither lanes nor the tracker ran one every
0.1 s and on every signal of the worker that holds them (docs/performance.md, item 19). So:

- after an empty round the wait doubles, from `poll_s` up to `idle_poll_s`; any round that
  finds work starts again from `poll_s`. Doorbells still wake the loop at once.
- a loop that holds no lane lease (its drains took none for `lane_lease_s`) and not the
  chain's tracker lease ignores signals: they say another worker sent (for the tracker) or
  freed room (for that worker's lanes). Its polls still take a dead holder's leases once they
  run out.
- a loop whose drains held a lane's lease within `lane_lease_s` polls every `poll_s`: it may
  still hold a lane whose doorbell another worker took, and that worker leaves the lane to it.
- a loop that holds the tracker lease, whose last round drained no lane (and left none
  free for a take-anyway, placement.py) and which holds no lane's lease, answers another
  worker's "sent" signal (a drain's step recorded its sends) with a tracking pass alone, for
  up to `ALONE_FOR_S` after that round: the round's reads and placement (chain row, lanes
  with queued work: ~1 round per step of one wallet's drain) are then not run for each step.
  Doorbells, polls and every other signal still start whole rounds, and a round still runs
  at least every `ALONE_FOR_S` (plus a pass and a poll) while the signals come, so a lane
  left for this worker, or only it can serve, waits no longer than placement's own second
  (docs/performance.md item 49).
"""

from dataclasses import dataclass

from chainflow.domain.transactions.config import ChainConfig

# How long after a round "sent" signals get a tracking pass alone, at most (`idle_poll_s` may
# be up to a minute): placement's take-anyway waits `LEFT_FOR_S` (1 s) for the same reason.
ALONE_FOR_S = 1.0


@dataclass(frozen=True)
class Round:
    """What one round of a chain's loop did."""

    signed: int = 0  # requests signed
    lanes: int = 0  # lanes with queued requests a drain could act on
    leased: bool = False  # its drains took or renewed the lease of a lane
    tracking: bool = False  # this process holds the chain's tracker lease
    tracked: int = 0  # requests in flight the tracker looked at
    took: int = 0  # lanes its drains were given (after placement)
    # Lanes placement left free (taken anyway if still free a second later) or settled here
    # without signing: later rounds must see them.
    left: int = 0
    chain: ChainConfig | None = None  # the chain as the round read it

    @property
    def empty(self) -> bool:
        return not (self.signed or self.lanes or self.tracked)


@dataclass
class Pace:
    """One chain loop's pacing; `now` is monotonic seconds."""

    poll_s: float
    idle_poll_s: float
    lane_lease_s: float
    empty_rounds: int = 0  # in a row
    tracking: bool = False
    lanes_at: float | None = None  # when a round last took or renewed a lane's lease
    # Until when "sent" signals get a tracking pass alone, on the chain as last read.
    alone_until: float | None = None
    chain: ChainConfig | None = None

    def note(self, done: Round, *, now: float) -> None:
        """Remember a round that ended at `now`."""
        self.tracking = done.tracking
        self.chain = done.chain
        if done.leased:
            self.lanes_at = now
        alone = (
            done.tracking
            and not (done.took or done.left)
            and done.chain is not None
            and not self.holds_lanes(now)  # a lane still held here: its work needs rounds
        )
        self.alone_until = now + min(self.idle_poll_s, ALONE_FOR_S) if alone else None
        self.empty_rounds = self.empty_rounds + 1 if done.empty and not self.holds_lanes(now) else 0

    def holds_lanes(self, now: float) -> bool:
        return self.lanes_at is not None and now - self.lanes_at < self.lane_lease_s

    def wait_s(self) -> float:
        """The wait before the next round unless something wakes the loop."""
        if not self.empty_rounds:
            return self.poll_s
        return max(self.poll_s, min(self.poll_s * 2.0 ** (self.empty_rounds - 1), self.idle_poll_s))

    def tracks_alone(self, now: float) -> bool:
        """Whether a "sent" signal gets a tracking pass alone rather than a round."""
        return (
            self.tracking
            and self.chain is not None
            and self.alone_until is not None
            and now < self.alone_until
        )

    def note_pass(self, tracked: int) -> None:
        """Remember a pass alone that looked at `tracked` requests in flight: requests still in
        flight keep the next rounds at `poll_s`, as a round that tracked them would."""
        if tracked:
            self.empty_rounds = 0

    def stop_alone(self) -> None:
        """The next wake-up starts a round (a pass alone failed or lost the tracker lease)."""
        self.alone_until = None

    def hears_signals(self, now: float) -> bool:
        """Whether another worker's signal can be for this loop."""
        return self.tracking or self.holds_lanes(now)
