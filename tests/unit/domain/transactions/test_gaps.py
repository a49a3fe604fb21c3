"""Which lanes are below a nonce gap, and when the tracker shows and clears it (track/gaps.py)."""

import uuid
from datetime import UTC, datetime
from typing import Any

from chainflow.core.types import ChainId, Nonce, TxId, WalletId, Wei
from chainflow.domain.transactions.rows import InFlight
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.transactions.track.gaps import (
    GAP_HOLD_S,
    GapChanges,
    GapMemory,
    find_gaps,
    note_gaps,
)

A, B = "0x" + "a" * 40, "0x" + "b" * 40
WALLET_A, WALLET_B = WalletId(uuid.uuid4()), WalletId(uuid.uuid4())


def in_flight(wallet_id: WalletId, address: str, nonce: int) -> InFlight:
    return InFlight(
        id=TxId(uuid.uuid4()),
        chain_id=ChainId(1),
        wallet_id=wallet_id,
        from_address=address,
        to_address=address,
        value_wei=Wei(0),
        data=b"",
        status=TxStatus.SUBMITTED,
        nonce=Nonce(nonce),
        cancel_requested=False,
        max_fee_per_gas_cap=None,
        max_priority_fee_per_gas_cap=None,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        attempts=(),
    )


ROWS = [in_flight(WALLET_A, A, n) for n in (3, 4, 5)] + [in_flight(WALLET_B, B, 7)]


def test_a_lane_is_gapped_when_its_pending_count_is_below_its_lowest_nonce_in_flight() -> None:
    found = find_gaps(ROWS, {A: 2, B: 7})
    assert list(found) == [WALLET_A]
    assert (found[WALLET_A].chain_nonce, found[WALLET_A].lowest) == (2, 3)
    assert find_gaps(ROWS, {A: 3, B: 9}) == {}  # at its lowest nonce (or above): not gapped
    assert find_gaps(ROWS, {}) == {}  # counts not read: unknown, not gapped


class Clock:
    """The memory's clock, moved by the test."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def memory_at(clock: Clock, **fields: Any) -> GapMemory:
    return GapMemory(clock=clock, **fields)


def noted(
    memory: GapMemory,
    pending: dict[str, int],
    *,
    head: int | None = 10,
    rows: list[InFlight] = ROWS,
    complete: bool = True,
) -> GapChanges:
    return note_gaps(rows, pending, memory, chain_id=1, head=head, complete=complete)


def test_shown_once_seen_for_the_hold_time_and_cleared_when_the_count_is_back() -> None:
    clock = Clock()
    memory = memory_at(clock)
    assert noted(memory, {A: 0, B: 7}) == GapChanges()  # one sight only
    clock.t += GAP_HOLD_S - 1
    # a second pass, but too soon: a replica or fallback endpoint may lag that long
    assert noted(memory, {A: 0, B: 7}) == GapChanges()
    clock.t += 1
    shown = noted(memory, {A: 0, B: 7})
    assert [gap.wallet_id for gap in shown.found] == [WALLET_A]
    assert shown.held == {A}
    again = noted(memory, {A: 0, B: 7})
    assert (again.found, again.cleared, again.held) == (
        (),
        (),
        frozenset({A}),
    )  # shown already: said once
    # a count not read this pass keeps the lane as it is
    assert noted(memory, {B: 7}).cleared == ()
    assert noted(memory, {A: 3, B: 7}).cleared == (WALLET_A,)
    assert memory.shown == set()


def test_the_hold_time_alone_is_not_enough_two_passes_are() -> None:
    clock = Clock()
    memory = memory_at(clock)
    clock.t += GAP_HOLD_S * 10
    assert noted(memory, {A: 0, B: 7}) == GapChanges()


def test_fast_passes_of_a_lagging_endpoint_neither_hold_nor_show() -> None:
    """Passes run after each drain's send, milliseconds apart: a lagging replica read on two
    of them is no gap (the old code showed it at the second pass)."""
    clock = Clock()
    memory = memory_at(clock)
    for _ in range(5):
        clock.t += 0.01
        assert noted(memory, {A: 0, B: 7}) == GapChanges()
    assert memory.shown == set()


def test_a_pass_that_does_not_see_the_gap_starts_its_time_again() -> None:
    clock = Clock()
    memory = memory_at(clock)
    noted(memory, {A: 0, B: 7})
    clock.t += GAP_HOLD_S - 1
    noted(memory, {A: 3, B: 7})  # the send landed
    noted(memory, {A: 0, B: 7})
    clock.t += GAP_HOLD_S - 1
    assert noted(memory, {A: 0, B: 7}) == GapChanges()
    clock.t += 1
    assert noted(memory, {A: 0, B: 7}).held == {A}


def test_a_pass_below_the_highest_head_seen_judges_nothing() -> None:
    clock = Clock()
    memory = memory_at(clock)
    noted(memory, {A: 0, B: 7}, head=10)
    clock.t += GAP_HOLD_S
    # a lagging endpoint: its gap neither shows nor resets the time seen
    assert noted(memory, {A: 0, B: 7}, head=9) == GapChanges()
    assert noted(memory, {A: 0, B: 7}, head=10).held == {A}
    # once held, a lagging pass keeps holding, and clears nothing
    lagging = noted(memory, {A: 3, B: 7}, head=8)
    assert (lagging.found, lagging.cleared, lagging.held) == ((), (), frozenset({A}))
    assert memory.shown == {WALLET_A}


def test_heads_below_the_top_for_the_hold_time_are_a_new_top() -> None:
    """A node reset (or one bogus high head) must not stop judging for good: held lanes
    never bumped, flags never cleared, new gaps never seen (review)."""
    clock = Clock()
    memory = memory_at(clock)
    noted(memory, {A: 0, B: 7}, head=1_000)
    clock.t += GAP_HOLD_S
    assert noted(memory, {A: 0, B: 7}, head=1_000).held == {A}
    clock.t += 1
    assert noted(memory, {A: 3, B: 7}, head=5).held == {A}  # below: judged later
    clock.t += GAP_HOLD_S - 1
    assert noted(memory, {A: 3, B: 7}, head=6).held == {A}  # still within the hold time
    clock.t += 1
    reset = noted(memory, {A: 3, B: 7}, head=6)  # below for GAP_HOLD_S: 6 is the top now
    assert (reset.cleared, reset.held) == ((WALLET_A,), frozenset())
    assert memory.top_head == 6
    assert memory.shown == set()


def test_a_shown_lane_with_nothing_in_flight_is_cleared() -> None:
    memory = GapMemory(shown={WALLET_A})  # as loaded from the lanes by a new lease holder
    assert note_gaps([], {}, memory, chain_id=1, head=None, complete=True).cleared == (WALLET_A,)


def test_a_shown_lane_off_a_page_cut_by_the_limit_keeps_its_reason() -> None:
    """The tracker's page (track_limit, wallet order) may leave a lane out: not read, so not
    cleared (the old code cleared it, then showed it again, an ERROR line each time)."""
    memory = GapMemory(shown={WALLET_B})
    only_a = ROWS[:3]
    assert noted(memory, {A: 3}, rows=only_a, complete=False).cleared == ()
    assert memory.shown == {WALLET_B}
    assert noted(memory, {A: 3}, rows=only_a, complete=True).cleared == (WALLET_B,)


def test_a_shown_lane_off_a_cut_page_found_with_nothing_in_flight_is_cleared() -> None:
    """The tracker looked the lanes off its cut page up (`idle`: nothing in flight): with
    none, no pass would ever read the lane, and its reason stayed for ever."""
    memory = GapMemory(shown={WALLET_B})
    changes = note_gaps(
        ROWS[:3], {A: 3}, memory, chain_id=1, head=10, complete=False, idle={WALLET_B}
    )
    assert changes.cleared == (WALLET_B,)
    assert memory.shown == set()


def test_a_lane_shown_by_another_process_is_cleared_when_read_and_not_gapped() -> None:
    memory = GapMemory(shown={WALLET_B})  # read from the lanes: not in this memory's sight
    assert noted(memory, {A: 3, B: 7}).cleared == (WALLET_B,)
