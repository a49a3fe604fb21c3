"""A chain loop's pacing: waits grow over empty rounds, work brings them back to the poll,
signals reach only a loop that holds a lane or the tracker lease, and another worker's sends
get a tracking pass alone only in a loop that tracks and drains nothing."""

import pytest

from chainflow.core.types import ChainId
from chainflow.domain.transactions.config import ChainConfig
from chainflow.workers.pace import ALONE_FOR_S, Pace, Round

EMPTY = Round()
CHAIN = ChainConfig(ChainId(31337), True, 1, 1.0, None, None)


def _pace() -> Pace:
    return Pace(poll_s=0.1, idle_poll_s=1.0, lane_lease_s=5.0)


def test_empty_rounds_double_the_wait_up_to_the_idle_poll() -> None:
    pace = _pace()
    waits = []
    for second in range(7):
        pace.note(EMPTY, now=float(second))
        waits.append(pace.wait_s())
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


@pytest.mark.parametrize(
    "work",
    [Round(signed=1, lanes=1, leased=True), Round(tracking=True, tracked=3), Round(lanes=2)],
    ids=["signed", "tracked", "lanes-without-room"],
)
def test_a_round_with_work_brings_the_wait_back_to_the_poll(work: Round) -> None:
    pace = _pace()
    for second in range(5):
        pace.note(EMPTY, now=float(second))
    assert pace.wait_s() == pytest.approx(1.0)
    pace.note(work, now=10.0)
    assert pace.wait_s() == pytest.approx(0.1)


def test_a_loop_that_found_lanes_polls_and_hears_signals_for_the_lane_lease() -> None:
    # It may hold a lane whose doorbell another worker took: that worker leaves the lane to
    # it, so it must keep looking while its lease can still run.
    pace = _pace()
    pace.note(Round(signed=3, lanes=1, leased=True), now=100.0)
    for at in (101.0, 102.0, 103.0, 104.9):
        pace.note(EMPTY, now=at)
        assert pace.wait_s() == pytest.approx(0.1)
        assert pace.hears_signals(at)
    pace.note(EMPTY, now=105.0)
    assert pace.wait_s() == pytest.approx(0.1)  # the first empty round after the lease
    assert not pace.hears_signals(105.0)
    pace.note(EMPTY, now=105.1)
    assert pace.wait_s() == pytest.approx(0.2)


def test_the_tracker_with_nothing_in_flight_backs_off_but_hears_signals() -> None:
    pace = _pace()
    for second in range(6):
        pace.note(Round(tracking=True), now=float(second))
    assert pace.wait_s() == pytest.approx(1.0)
    assert pace.hears_signals(6.0)  # another worker's sends are for it


def test_a_loop_holding_nothing_ignores_signals() -> None:
    pace = _pace()
    pace.note(EMPTY, now=1.0)
    assert not pace.hears_signals(1.0)
    pace.note(Round(tracking=True), now=2.0)  # took the tracker lease (its holder died)
    assert pace.hears_signals(2.0)


def test_lanes_another_worker_claimed_first_are_not_held() -> None:
    # Both workers saw the lanes; the other's claim came first, so this one's took none.
    pace = _pace()
    pace.note(Round(lanes=3), now=1.0)
    assert pace.wait_s() == pytest.approx(0.1)
    assert not pace.hears_signals(1.0)
    pace.note(EMPTY, now=1.1)
    pace.note(EMPTY, now=1.2)
    assert pace.wait_s() == pytest.approx(0.2)


def test_the_tracker_that_drained_nothing_tracks_alone_until_the_idle_poll() -> None:
    pace = _pace()
    pace.note(Round(tracking=True, tracked=64, chain=CHAIN), now=10.0)
    assert pace.tracks_alone(10.5)
    assert pace.chain == CHAIN
    assert not pace.tracks_alone(11.0)  # a whole round at least once per idle_poll_s


def test_a_long_idle_poll_still_brings_a_round_within_a_second() -> None:
    pace = Pace(poll_s=0.1, idle_poll_s=60.0, lane_lease_s=5.0)
    pace.note(Round(tracking=True, tracked=64, chain=CHAIN), now=10.0)
    assert pace.tracks_alone(10.9)
    assert not pace.tracks_alone(10.0 + ALONE_FOR_S)


def test_a_tracker_still_holding_a_lane_runs_rounds_for_it() -> None:
    """A lane this worker drained keeps its lease for lane_lease_s: the other worker leaves
    that lane's new work to this one, which only a round can drain."""
    pace = _pace()
    pace.note(Round(tracking=True, signed=64, lanes=1, leased=True, took=1, chain=CHAIN), now=10.0)
    pace.note(Round(tracking=True, tracked=64, chain=CHAIN), now=10.2)
    assert not pace.tracks_alone(10.3)
    pace.note(Round(tracking=True, tracked=64, chain=CHAIN), now=15.1)  # the lease ran out
    assert pace.tracks_alone(15.2)


def test_a_pass_alone_that_tracked_keeps_the_poll_short() -> None:
    pace = _pace()
    for second in range(3):
        pace.note(Round(tracking=True, chain=CHAIN), now=10.0 + second)
    assert pace.wait_s() > pace.poll_s
    pace.note_pass(tracked=0)
    assert pace.wait_s() > pace.poll_s
    pace.note_pass(tracked=5)
    assert pace.wait_s() == pytest.approx(pace.poll_s)


@pytest.mark.parametrize(
    "done",
    [
        Round(tracking=True, tracked=64, took=1, lanes=1, chain=CHAIN),
        Round(tracking=True, tracked=64, left=1, lanes=1, chain=CHAIN),
        Round(tracked=64, chain=CHAIN),
        Round(tracking=True, tracked=64),
    ],
    ids=["took-a-lane", "left-a-lane", "not-tracking", "chain-unread"],
)
def test_sends_heard_otherwise_start_a_round(done: Round) -> None:
    pace = _pace()
    pace.note(done, now=10.0)
    assert not pace.tracks_alone(10.1)


def test_a_failed_pass_alone_goes_back_to_rounds() -> None:
    pace = _pace()
    pace.note(Round(tracking=True, chain=CHAIN), now=10.0)
    pace.stop_alone()
    assert not pace.tracks_alone(10.1)
    pace.note(Round(tracking=True, chain=CHAIN), now=10.2)  # the next round allows it again
    assert pace.tracks_alone(10.3)
