"""The state machine: every (status, event) pair, and a Hypothesis walk of random events."""

import itertools

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from chainflow.domain.transactions.state import (
    TERMINAL_STATUSES,
    InvalidTransition,
    TxEvent,
    TxStatus,
    is_terminal,
    transition,
)

S, E = TxStatus, TxEvent
ALLOWED = {
    (S.QUEUED, E.SIGNED): S.SIGNED,
    (S.QUEUED, E.FAILED): S.FAILED,
    (S.QUEUED, E.CANCELLED): S.CANCELLED,
    (S.QUEUED, E.EXPIRED): S.EXPIRED,
    (S.SIGNED, E.BROADCAST_ACCEPTED): S.SUBMITTED,
    (S.SIGNED, E.FAILED): S.FAILED,
    (S.SIGNED, E.NONCE_RELEASED): S.QUEUED,
    (S.SIGNED, E.RECEIPT_FOUND): S.MINED,
    (S.SUBMITTED, E.BROADCAST_ACCEPTED): S.SUBMITTED,
    (S.SUBMITTED, E.RECEIPT_FOUND): S.MINED,
    (S.SUBMITTED, E.FAILED): S.FAILED,
    (S.MINED, E.RECEIPT_FOUND): S.MINED,
    (S.MINED, E.RECEIPT_VANISHED): S.SUBMITTED,
    (S.MINED, E.CONFIRMED_SUCCESS): S.CONFIRMED,
    (S.MINED, E.CONFIRMED_REVERT): S.REVERTED,
    (S.MINED, E.CANCEL_WON): S.CANCELLED,
}
ORDER = [S.QUEUED, S.SIGNED, S.SUBMITTED, S.MINED]


class TestTransition:
    @pytest.mark.parametrize(("status", "event"), list(itertools.product(TxStatus, TxEvent)))
    def test_every_pair_is_allowed_or_refused_as_designed(
        self, status: TxStatus, event: TxEvent
    ) -> None:
        expected = ALLOWED.get((status, event))
        if expected is None:
            with pytest.raises(InvalidTransition):
                transition(status, event)
        else:
            assert transition(status, event) is expected

    def test_statuses_are_exactly_the_api_strings(self) -> None:
        assert [s.value for s in TxStatus] == [
            "queued",
            "signed",
            "submitted",
            "mined",
            "confirmed",
            "reverted",
            "failed",
            "cancelled",
            "expired",
        ]

    def test_terminal_statuses_take_no_event(self) -> None:
        for status, event in itertools.product(TERMINAL_STATUSES, TxEvent):
            with pytest.raises(InvalidTransition):
                transition(status, event)
        assert {s for s in TxStatus if is_terminal(s)} == TERMINAL_STATUSES


class TxLifecycle(RuleBasedStateMachine):
    """Random events: refused ones change nothing; accepted ones move forward except a reorg
    (mined → submitted) or a nonce released before any node saw it (signed → queued)."""

    def __init__(self) -> None:
        super().__init__()
        self.status = TxStatus.QUEUED
        self.history = [self.status]

    @rule(event=st.sampled_from(list(TxEvent)))
    def apply(self, event: TxEvent) -> None:
        before = self.status
        try:
            self.status = transition(before, event)
        except InvalidTransition:
            assert self.status is before
            return
        self.history.append(self.status)
        if (
            before in ORDER
            and self.status in ORDER
            and ORDER.index(self.status) < ORDER.index(before)
        ):
            assert (before, self.status) in {(S.MINED, S.SUBMITTED), (S.SIGNED, S.QUEUED)}

    @invariant()
    def terminal_is_last(self) -> None:
        for earlier in self.history[:-1]:
            assert not is_terminal(earlier)

    @invariant()
    def only_mined_reaches_confirmed_or_reverted(self) -> None:
        for before, after in itertools.pairwise(self.history):
            if after in (S.CONFIRMED, S.REVERTED):
                assert before is S.MINED


TestTxLifecycle = TxLifecycle.TestCase
