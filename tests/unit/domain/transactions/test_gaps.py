"""Which lanes are below a nonce gap, and when the tracker shows and clears it (track/gaps.py)."""

import uuid
from datetime import UTC, datetime

from chainflow.core.types import ChainId, Nonce, TxId, WalletId, Wei
from chainflow.domain.transactions.rows import InFlight
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.transactions.track.gaps import GapMemory, find_gaps, note_gaps

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


def test_shown_on_the_second_pass_in_a_row_once_and_cleared_when_the_count_is_back() -> None:
    memory = GapMemory()
    assert note_gaps(ROWS, {A: 0, B: 7}, memory, chain_id=1).found == ()  # one sight only
    second = note_gaps(ROWS, {A: 0, B: 7}, memory, chain_id=1)
    assert [gap.wallet_id for gap in second.found] == [WALLET_A]
    third = note_gaps(ROWS, {A: 0, B: 7}, memory, chain_id=1)
    assert (third.found, third.cleared) == ((), ())  # shown already: said once
    # a count not read this pass keeps the lane as it is
    assert note_gaps(ROWS, {B: 7}, memory, chain_id=1).cleared == ()
    assert note_gaps(ROWS, {A: 3, B: 7}, memory, chain_id=1).cleared == (WALLET_A,)
    assert memory.shown == set()


def test_a_sight_not_followed_by_a_second_is_forgotten() -> None:
    memory = GapMemory()
    note_gaps(ROWS, {A: 0, B: 7}, memory, chain_id=1)
    note_gaps(ROWS, {A: 3, B: 7}, memory, chain_id=1)  # the send landed
    assert note_gaps(ROWS, {A: 0, B: 7}, memory, chain_id=1).found == ()


def test_a_shown_lane_with_nothing_in_flight_is_cleared() -> None:
    memory = GapMemory(shown={WALLET_A})  # as loaded from the lanes by a new lease holder
    assert note_gaps([], {}, memory, chain_id=1).cleared == (WALLET_A,)
