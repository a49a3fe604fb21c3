"""How a round splits its lanes into drains that run at once."""

import uuid

import pytest

from chainflow.core.types import WalletId
from chainflow.workers.main import drain_batches


def _lanes(*counts: int) -> dict[WalletId, int]:
    return {WalletId(uuid.uuid4()): count for count in counts}


def test_little_work_stays_one_drain() -> None:
    queued = _lanes(*([3] * 32))  # 96 requests: less than one drain's worth
    assert [len(batch) for batch in drain_batches(queued, per_lane=64)] == [32]


def test_much_work_over_many_lanes_is_four_drains() -> None:
    queued = _lanes(*([150] * 32))
    batches = drain_batches(queued, per_lane=64)
    assert [len(batch) for batch in batches] == [8, 8, 8, 8]
    assert [lane for batch in batches for lane in batch] == list(queued)  # each lane once


def test_work_counts_at_most_a_lane_s_round() -> None:
    # One lane with 10,000 queued can sign 64 this round: not worth a second drain.
    assert len(drain_batches(_lanes(10_000, 1), per_lane=64)) == 1


def test_never_more_drains_than_lanes() -> None:
    assert [len(b) for b in drain_batches(_lanes(500, 500), per_lane=500)] == [1, 1]


@pytest.mark.parametrize("lanes", [0, 1, 7, 300, 1000])
def test_every_lane_in_exactly_one_drain_of_at_most_64(lanes: int) -> None:
    queued = _lanes(*([100] * lanes))
    batches = drain_batches(queued, per_lane=64)
    assert sorted(lane for batch in batches for lane in batch) == sorted(queued)
    assert all(0 < len(batch) <= 64 for batch in batches)
