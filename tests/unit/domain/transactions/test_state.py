"""The state machine: every (status, event) pair, its shape, and a Hypothesis walk of events."""

import itertools

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from chainflow.core.errors import Conflict
from chainflow.domain.transactions.state import (
    TERMINAL_STATUSES,
    InvalidTransition,
    TxEvent,
    TxStatus,
    is_terminal,
    transition,
)

S, E = TxStatus, TxEvent

# Written out again on purpose: a change to the table in state.py must be made twice.
ALLOWED: dict[tuple[TxStatus, TxEvent], TxStatus] = {
    (S.QUEUED, E.SIGNED): S.SIGNED,
    (S.QUEUED, E.FAILED): S.FAILED,
    (S.QUEUED, E.CANCELLED): S.CANCELLED,
    (S.QUEUED, E.EXPIRED): S.EXPIRED,
    (S.SIGNED, E.BROADCAST_ACCEPTED): S.SUBMITTED,
    (S.SIGNED, E.FAILED): S.FAILED,
    (S.SIGNED, E.NONCE_RELEASED): S.QUEUED,
    (S.SIGNED, E.RECEIPT_FOUND): S.MINED,
    (S.SIGNED, E.CANCEL_WON): S.CANCELLED,
    (S.SUBMITTED, E.BROADCAST_ACCEPTED): S.SUBMITTED,
    (S.SUBMITTED, E.RECEIPT_FOUND): S.MINED,
    (S.SUBMITTED, E.CANCEL_WON): S.CANCELLED,
    (S.SUBMITTED, E.FAILED): S.FAILED,
    (S.MINED, E.RECEIPT_FOUND): S.MINED,
    (S.MINED, E.RECEIPT_VANISHED): S.SUBMITTED,
    (S.MINED, E.CONFIRMED_SUCCESS): S.CONFIRMED,
    (S.MINED, E.CONFIRMED_REVERT): S.REVERTED,
    (S.MINED, E.CANCEL_WON): S.CANCELLED,
}
ALL_PAIRS = list(itertools.product(TxStatus, TxEvent))
REFUSED = [pair for pair in ALL_PAIRS if pair not in ALLOWED]

# How far along the happy path a status is; every terminal status counts as the end.
RANK = {S.QUEUED: 0, S.SIGNED: 1, S.SUBMITTED: 2, S.MINED: 3} | dict.fromkeys(TERMINAL_STATUSES, 4)
BACKWARD_STEPS = {
    (S.MINED, E.RECEIPT_VANISHED, S.SUBMITTED),  # reorg, DESIGN §7
    (S.SIGNED, E.NONCE_RELEASED, S.QUEUED),  # never reached a node, DESIGN §6.5
}


def sources_of(target: TxStatus) -> set[TxStatus]:
    return {status for (status, _), after in ALLOWED.items() if after is target}


def reachable_from(start: TxStatus) -> set[TxStatus]:
    seen, frontier = {start}, [start]
    while frontier:
        status = frontier.pop()
        for (before, _), after in ALLOWED.items():
            if before is status and after not in seen:
                seen.add(after)
                frontier.append(after)
    return seen


class TestTransition:
    @pytest.mark.parametrize(("status", "event"), list(ALLOWED))
    def test_allowed_pair_moves_to_the_designed_status(
        self, status: TxStatus, event: TxEvent
    ) -> None:
        assert transition(status, event) is ALLOWED[(status, event)]

    @pytest.mark.parametrize(("status", "event"), REFUSED)
    def test_refused_pair_raises_invalid_transition(self, status: TxStatus, event: TxEvent) -> None:
        with pytest.raises(InvalidTransition) as caught:
            transition(status, event)
        assert caught.value.extra == {"status": status.value, "event": event.value}
        assert str(status) in caught.value.detail
        assert str(event) in caught.value.detail

    def test_every_pair_is_covered_once(self) -> None:
        assert len(ALLOWED) + len(REFUSED) == len(TxStatus) * len(TxEvent) == 99

    def test_invalid_transition_is_a_conflict_with_a_stable_code(self) -> None:
        assert issubclass(InvalidTransition, Conflict)
        assert InvalidTransition.code == "invalid_transition"


class TestVocabulary:
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

    @pytest.mark.parametrize("member", [*TxStatus, *TxEvent])
    def test_values_are_the_lowercase_names(self, member: TxStatus | TxEvent) -> None:
        assert member.value == member.name.lower()


class TestShape:
    def test_terminal_statuses(self) -> None:
        assert frozenset({S.CONFIRMED, S.REVERTED, S.FAILED, S.CANCELLED, S.EXPIRED}) == (
            TERMINAL_STATUSES
        )
        assert {s for s in TxStatus if is_terminal(s)} == TERMINAL_STATUSES

    def test_mined_is_not_terminal_because_a_reorg_can_undo_it(self) -> None:
        assert not is_terminal(S.MINED)
        assert transition(S.MINED, E.RECEIPT_VANISHED) is S.SUBMITTED

    @pytest.mark.parametrize(
        ("status", "event"), list(itertools.product(sorted(TERMINAL_STATUSES), E))
    )
    def test_terminal_statuses_absorb(self, status: TxStatus, event: TxEvent) -> None:
        with pytest.raises(InvalidTransition):
            transition(status, event)

    def test_only_reorg_and_nonce_release_go_backwards(self) -> None:
        backward = {
            (before, event, after)
            for (before, event), after in ALLOWED.items()
            if RANK[after] < RANK[before]
        }
        assert backward == BACKWARD_STEPS

    @pytest.mark.parametrize(
        ("target", "sources"),
        [
            (S.SIGNED, {S.QUEUED}),
            (S.SUBMITTED, {S.SIGNED, S.SUBMITTED, S.MINED}),
            (S.MINED, {S.SIGNED, S.SUBMITTED, S.MINED}),
            (S.CONFIRMED, {S.MINED}),
            (S.REVERTED, {S.MINED}),
            (S.FAILED, {S.QUEUED, S.SIGNED, S.SUBMITTED}),
            (S.CANCELLED, {S.QUEUED, S.SIGNED, S.SUBMITTED, S.MINED}),
            (S.EXPIRED, {S.QUEUED}),
            (S.QUEUED, {S.SIGNED}),
        ],
    )
    def test_each_status_is_entered_only_from_its_designed_sources(
        self, target: TxStatus, sources: set[TxStatus]
    ) -> None:
        assert sources_of(target) == sources

    def test_a_queued_cancel_and_a_winning_cancel_transfer_are_distinct_events(self) -> None:
        assert transition(S.QUEUED, E.CANCELLED) is S.CANCELLED
        with pytest.raises(InvalidTransition):
            transition(S.SUBMITTED, E.CANCELLED)
        with pytest.raises(InvalidTransition):
            transition(S.QUEUED, E.CANCEL_WON)

    def test_a_receipt_seen_before_acceptance_was_recorded_goes_straight_to_mined(self) -> None:
        assert transition(S.SIGNED, E.RECEIPT_FOUND) is S.MINED

    def test_every_status_is_reachable_from_queued(self) -> None:
        assert reachable_from(S.QUEUED) == set(TxStatus)

    @pytest.mark.parametrize("status", sorted(set(TxStatus) - TERMINAL_STATUSES))
    def test_every_live_status_can_still_finish(self, status: TxStatus) -> None:
        assert reachable_from(status) & TERMINAL_STATUSES


def allowed_events(status: TxStatus) -> list[TxEvent]:
    return [event for (before, event) in ALLOWED if before is status]


class TxLifecycle(RuleBasedStateMachine):
    """Random events on one request at a time, checking the invariants after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.history: list[TxStatus] = [S.QUEUED]
        self.steps: list[tuple[TxStatus, TxEvent, TxStatus]] = []

    @property
    def status(self) -> TxStatus:
        return self.history[-1]

    def step(self, event: TxEvent) -> None:
        before = self.status
        try:
            after = transition(before, event)
        except InvalidTransition:
            assert (before, event) not in ALLOWED
            return
        self.history.append(after)
        self.steps.append((before, event, after))

    @rule(event=st.sampled_from(TxEvent))
    def any_event(self, event: TxEvent) -> None:
        self.step(event)

    @precondition(lambda self: not is_terminal(self.status))
    @rule(data=st.data())
    def an_allowed_event(self, data: st.DataObject) -> None:
        self.step(data.draw(st.sampled_from(allowed_events(self.status))))

    @precondition(lambda self: is_terminal(self.status))
    @rule()
    def next_request(self) -> None:
        self.history, self.steps = [S.QUEUED], []

    @invariant()
    def terminal_statuses_absorb(self) -> None:
        for status in self.history[:-1]:
            assert not is_terminal(status)
        if is_terminal(self.status):
            for event in TxEvent:
                with pytest.raises(InvalidTransition):
                    transition(self.status, event)

    @invariant()
    def only_reorg_and_nonce_release_move_backwards(self) -> None:
        for before, event, after in self.steps:
            if RANK[after] < RANK[before]:
                assert (before, event, after) in BACKWARD_STEPS

    @invariant()
    def outcomes_come_from_their_designed_sources(self) -> None:
        for before, _, after in self.steps:
            if after in (S.CONFIRMED, S.REVERTED):
                assert before is S.MINED
            if after is S.EXPIRED:
                assert before is S.QUEUED

    @invariant()
    def nothing_is_broadcast_or_mined_before_it_is_signed(self) -> None:
        for index, status in enumerate(self.history):
            if status in (S.SUBMITTED, S.MINED, S.CONFIRMED, S.REVERTED):
                assert S.SIGNED in self.history[:index]


TestTxLifecycle = TxLifecycle.TestCase
