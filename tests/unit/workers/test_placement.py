"""Lane placement (workers/placement.py): a round takes its share of a chain's lanes with
work when other live workers serve the chain, and takes a lane it left anyway once nobody
came for it."""

import uuid

import structlog
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from chainflow.core.types import WalletId
from chainflow.domain.transactions.repository import LaneHolders
from chainflow.infra.signing.keystore import MasterKey
from chainflow.workers.engine import Engine, Ports
from chainflow.workers.placement import (
    ALONE_MAX_S,
    LEFT_FOR_S,
    WORTH_PLACING,
    Placed,
    Placement,
    Placing,
    place,
    place_round,
)

ME, OTHER = "worker-me", "worker-other"


def _lanes(count: int, queued: int = 100) -> dict[WalletId, int]:
    return {WalletId(uuid.uuid4()): queued for _ in range(count)}


def _place(
    lanes: dict[WalletId, int],
    *,
    memory: Placing | None = None,
    here: frozenset[WalletId] = frozenset(),
    elsewhere: dict[WalletId, int] | None = None,
    workers: tuple[str, ...] = (ME, OTHER),
    owner: str = ME,
    tracker: str | None = None,
    now: float = 100.0,
    unsignable: frozenset[WalletId] = frozenset(),
) -> Placement:
    return place(
        lanes,
        here=here,
        elsewhere=elsewhere or {},
        workers=workers,
        owner=owner,
        tracker=tracker,
        memory=memory if memory is not None else Placing(),
        now=now,
        alone_for_s=5.0,
        unsignable=unsignable,
    )


class TestPlace:
    def test_a_lone_worker_takes_every_lane(self) -> None:
        lanes = _lanes(32)
        assert _place(lanes, workers=(ME,)) == Placement(lanes)

    def test_little_work_is_not_spread(self) -> None:
        lanes = _lanes(4, queued=(WORTH_PLACING - 1) // 4)
        assert _place(lanes) == Placement(lanes)

    def test_with_two_workers_the_one_that_does_not_track_takes_every_lane(self) -> None:
        lanes = _lanes(32)
        drainer = _place(lanes, owner=ME, tracker=OTHER)
        tracker = _place(lanes, owner=OTHER, tracker=OTHER)
        assert drainer.take == lanes
        assert tracker.take == {}
        assert sorted(tracker.left) == sorted(lanes)

    def test_two_workers_that_do_not_track_take_complementary_halves_of_the_free_lanes(
        self,
    ) -> None:
        lanes = _lanes(32)
        workers = (ME, OTHER, "worker-tracking")
        mine = _place(lanes, owner=ME, workers=workers, tracker="worker-tracking")
        theirs = _place(lanes, owner=OTHER, workers=workers, tracker="worker-tracking")
        assert len(mine.take) == len(theirs.take) == 16
        # the same roster gives each lane the same preferred worker: no lane both reach for
        assert set(mine.take) | set(theirs.take) == set(lanes)
        assert set(mine.left) == set(lanes) - set(mine.take)
        assert mine.release == []  # none of them was held here

    def test_the_lanes_held_here_are_kept_first_and_the_surplus_released(self) -> None:
        lanes = _lanes(32)
        held = frozenset(lanes)
        done = _place(
            lanes, here=held, workers=(ME, OTHER, "worker-tracking"), tracker="worker-tracking"
        )
        assert len(done.take) == 16
        assert sorted(done.release) == sorted(done.left)
        assert len(done.left) == 16

    def test_the_tracker_holder_releases_the_lanes_it_holds(self) -> None:
        lanes = _lanes(8)
        done = _place(lanes, here=frozenset(lanes), tracker=ME)
        assert done.take == {}
        assert sorted(done.release) == sorted(lanes)

    def test_lanes_another_worker_holds_count_in_the_share(self) -> None:
        theirs = _lanes(16)
        free = _lanes(16)
        done = _place(free, elsewhere=theirs)
        assert done.take == free
        assert done.left == []

    def test_the_tracker_holder_leaves_a_single_lane_to_the_other_worker(self) -> None:
        lane = _lanes(1, queued=3000)
        (wallet,) = lane
        tracker = _place(lane, here=frozenset(lane), tracker=ME)
        assert tracker.take == {}
        assert tracker.release == [wallet]
        other = _place(lane, owner=OTHER)
        assert other.take == lane

    def test_a_lane_left_and_still_free_is_taken_anyway_and_nothing_left_for_a_lease(
        self,
    ) -> None:
        lanes = _lanes(8)
        memory = Placing()
        first = _place(lanes, memory=memory, now=100.0)
        assert len(first.take) == 4
        # nobody came yet: still left
        assert _place(lanes, memory=memory, now=100.0 + LEFT_FOR_S / 2).take == first.take
        # nobody came in time: every lane, and for the lease after it too
        assert _place(lanes, memory=memory, now=100.0 + LEFT_FOR_S).take == lanes
        assert _place(lanes, memory=memory, now=104.0).take == lanes
        assert len(_place(lanes, memory=memory, now=106.0).take) == 4

    def test_a_lane_the_other_worker_took_is_forgotten(self) -> None:
        lanes = _lanes(8)
        memory = Placing()
        first = _place(lanes, memory=memory, now=100.0)
        taken_by_other = {lane: lanes[lane] for lane in first.left}
        later = _place(first.take, elsewhere=taken_by_other, memory=memory, now=102.0)
        assert later.take == first.take
        assert memory.left == {}

    def test_a_worker_that_never_comes_makes_each_alone_period_twice_as_long(self) -> None:
        # The other worker beats but never drains: each take-anyway in a row doubles the time
        # nothing is left (5 s, 10 s, 20 s ... up to ALONE_MAX_S), not a stall every lease.
        lanes = _lanes(8)
        memory = Placing()
        now = 100.0
        alone = []
        for _ in range(8):
            assert len(_place(lanes, memory=memory, now=now).take) == 4  # leaves half
            now += LEFT_FOR_S
            assert _place(lanes, memory=memory, now=now).take == lanes  # taken anyway
            alone.append(memory.alone_until - now)
            now = memory.alone_until
        assert alone == [5.0, 10.0, 20.0, 40.0, 80.0, ALONE_MAX_S, ALONE_MAX_S, ALONE_MAX_S]

    def test_a_lane_left_that_another_worker_took_ends_the_streak(self) -> None:
        lanes = _lanes(8)
        memory = Placing()
        for now in (100.0, 100.0 + LEFT_FOR_S):  # left, then taken anyway: 5 s alone
            _place(lanes, memory=memory, now=now)
        now = memory.alone_until
        first = _place(lanes, memory=memory, now=now)  # leaves half again
        # the other worker took them this time: back to one lease alone at the next take-anyway
        taken_by_other = {lane: lanes[lane] for lane in first.left}
        _place(first.take, elsewhere=taken_by_other, memory=memory, now=now + 0.5)
        assert memory.taken_anyway == 0
        later = _place(lanes, memory=memory, now=now + 2.0)  # it left them: free again
        assert len(later.take) == 4
        _place(lanes, memory=memory, now=now + 2.0 + LEFT_FOR_S)
        assert memory.alone_until - (now + 2.0 + LEFT_FOR_S) == 5.0

    def test_a_worker_that_joins_ends_the_alone_period_and_the_streak(self) -> None:
        lanes = _lanes(8)
        memory = Placing()
        now = 100.0
        for _ in range(4):  # four take-anyways in a row: 40 s alone at the last
            _place(lanes, memory=memory, now=now)
            now += LEFT_FOR_S
            _place(lanes, memory=memory, now=now)
            now = memory.alone_until
        now -= 30.0
        assert _place(lanes, memory=memory, now=now).take == lanes  # still alone
        workers = (ME, OTHER, "worker-new")
        joined = _place(lanes, memory=memory, now=now + 0.5, workers=workers)
        assert len(joined.take) == 3  # shares with the newcomer at once
        assert memory.taken_anyway == 0
        # the same roster again is no newcomer: the next take-anyway is one lease alone
        _place(lanes, memory=memory, now=now + 0.5 + LEFT_FOR_S, workers=workers)
        assert memory.alone_until - (now + 0.5 + LEFT_FOR_S) == 5.0

    def test_a_round_alone_keeps_the_workers_it_last_placed_with(self) -> None:
        # The other worker's beats flap (missed for a round): it is no newcomer when it shows
        # again, so the take-anyway streak and the alone period it earned are kept.
        lanes = _lanes(8)
        memory = Placing()
        _place(lanes, memory=memory, now=100.0)  # leaves half
        _place(lanes, memory=memory, now=100.0 + LEFT_FOR_S)  # nobody came: taken anyway
        streak, alone_until = memory.taken_anyway, memory.alone_until
        assert (streak, alone_until) == (1, 100.0 + LEFT_FOR_S + 5.0)
        alone = _place(lanes, memory=memory, now=101.5, workers=(ME,))
        assert alone.take == lanes
        assert memory.members == frozenset((ME, OTHER))
        back = _place(lanes, memory=memory, now=102.0)
        assert back.take == lanes  # still within the alone period
        assert (memory.taken_anyway, memory.alone_until) == (streak, alone_until)


class TestSignerDownHere:
    """A lane whose signer is down on this worker's host (issue 20) goes to a worker that can
    sign it: never taken here, never left to come back by the take-anyway rule."""

    def test_a_lane_held_here_that_it_cannot_sign_is_freed(self) -> None:
        lanes = _lanes(2, queued=3)  # too little work to place: every lane it can sign
        (down, up) = lanes
        done = _place(lanes, here=frozenset(lanes), unsignable=frozenset({down}))
        assert done == Placement({up: 3}, down=[down])

    def test_it_is_never_taken_anyway_and_never_makes_the_worker_alone(self) -> None:
        lanes = _lanes(8)
        down = frozenset(list(lanes)[:1])
        memory = Placing()
        for now in (100.0, 100.0 + LEFT_FOR_S, 100.0 + 10 * LEFT_FOR_S):
            done = _place(lanes, memory=memory, now=now, tracker=OTHER, unsignable=down)
            assert set(done.take) == set(lanes) - down  # the others: its share is all
            assert done.down == []  # not held here: nothing to free
        assert memory.left == {}
        assert (memory.alone_until, memory.taken_anyway) == (0.0, 0)

    def test_when_it_shares_the_lane_is_neither_counted_in_its_share_nor_left(self) -> None:
        lanes = _lanes(8)
        down = frozenset(list(lanes)[:2])
        done = _place(lanes, here=frozenset(lanes), unsignable=down)
        assert len(done.take) == 3  # 6 lanes it can sign, 2 workers: the 2 down are not its share
        assert not down & set(done.take)
        assert not down & set(done.left)
        assert sorted(done.down) == sorted(down)
        assert sorted(done.release) == sorted(done.left)

    def test_a_lone_worker_keeps_it(self) -> None:
        lanes = _lanes(8)
        assert _place(lanes, workers=(ME,), unsignable=frozenset(lanes)) == Placement(lanes)


class TestPlaceRound:
    async def test_a_release_that_fails_does_not_fail_the_round(
        self, master_key: MasterKey
    ) -> None:
        # The database refuses the release (port 1): the round still gets its placement (the
        # lanes' leases lapse instead), and the failure is logged once, not every round.
        bind = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
        ports = Ports(
            sessionmaker=async_sessionmaker(bind), rpc={}, master_key=master_key, owner=ME
        )
        engine = Engine.start(ports)
        lanes = _lanes(8)
        try:
            with structlog.testing.capture_logs() as logs:
                for _ in range(3):
                    placed = await place_round(
                        engine,
                        1,
                        lanes,
                        LaneHolders(here=set(lanes)),
                        workers=(ME, OTHER),
                        tracker=ME,  # the tracker's holder leaves (and releases) every lane
                    )
                    assert placed.take == {}
            assert [entry["event"] for entry in logs] == ["lanes.release_failed"]
            assert engine.state.placing[1].release_failures == 3
        finally:
            await engine.stop()
            await bind.dispose()

    async def test_the_lanes_it_cannot_sign_are_not_taken_but_returned_apart(
        self, master_key: MasterKey
    ) -> None:
        # They are no drain work (the loop's pace counts them out) and only have their
        # requests expired or failed, without signing (main.run_round).
        ports = Ports(sessionmaker=async_sessionmaker(), rpc={}, master_key=master_key, owner=ME)
        engine = Engine.start(ports)
        lanes = _lanes(2, queued=3)
        (down, up) = lanes
        engine.state.signers.note_unavailable(down)
        try:
            placed = await place_round(
                engine, 1, lanes, LaneHolders(), workers=(ME, OTHER), tracker=None
            )
            assert placed == Placed({up: 3}, [down])
        finally:
            await engine.stop()
