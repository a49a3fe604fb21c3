"""The transaction state machine (DESIGN §5): one table of allowed (status, event) steps, and
the kinds and statuses of requests and attempts. Pure."""

from enum import StrEnum

from chainflow.core.errors import Conflict


class TxStatus(StrEnum):
    QUEUED = "queued"
    SIGNED = "signed"
    SUBMITTED = "submitted"
    MINED = "mined"
    CONFIRMED = "confirmed"
    REVERTED = "reverted"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class TxEvent(StrEnum):
    SIGNED = "signed"  # nonce assigned, signed bytes stored (write-ahead, DESIGN §6.3)
    BROADCAST_ACCEPTED = "broadcast_accepted"  # a node took an attempt (or already had it)
    RECEIPT_FOUND = "receipt_found"  # an attempt has a receipt, not yet at depth
    RECEIPT_VANISHED = "receipt_vanished"  # reorg: the receipt is gone from the canonical chain
    CONFIRMED_SUCCESS = "confirmed_success"  # receipt status 1 at depth
    CONFIRMED_REVERT = "confirmed_revert"  # receipt status 0 at depth
    CANCEL_WON = "cancel_won"  # the 0-value self-transfer at our nonce took the nonce
    FAILED = "failed"  # terminal error; see the table for when it may follow a broadcast
    NONCE_RELEASED = "nonce_released"  # signed, definitely never reached a node: back to queued
    CANCELLED = "cancelled"  # cancelled before signing
    EXPIRED = "expired"  # valid_until passed before signing


class TxKind(StrEnum):
    REQUEST = "request"  # submitted through the API
    FILLER = "filler"  # 0-value self-transfer that fills a nonce which must be burned


class AttemptKind(StrEnum):
    ORIGINAL = "original"
    BUMP = "bump"
    CANCEL = "cancel"


class AttemptStatus(StrEnum):
    SIGNED = "signed"  # stored, maybe never sent
    SUBMITTED = "submitted"  # a node accepted it (or said it already knew it)
    MINED = "mined"  # has a receipt
    REPLACED = "replaced"  # another attempt of the same nonce was mined


class InvalidTransition(Conflict):
    code = "invalid_transition"
    title = "Invalid transition"


# DESIGN §5, as a table:
#
#   queued ──► signed ──► submitted ──► mined ──► confirmed | reverted
#     ▲          │  │          ▲          │ ▲
#     └─released─┘  │          └── reorg ─┘ │
#                   └──── receipt found ────┘
#   failed     from queued; from signed (never reached a node); from submitted (foreign nonce)
#   cancelled  from queued; from signed, submitted or mined when our cancel self-transfer won
#   expired    from queued only
#
# Invariants (tests/unit/domain/transactions/test_state.py checks each):
# - The five terminal statuses take no event. `mined` is not terminal: a reorg can undo it.
# - Only two steps go backwards: a reorg (mined → submitted, DESIGN §7) and a nonce released by
#   a request that definitely never reached a node (signed → queued, DESIGN §6.5).
# - Repeats that carry news are self-steps (a bump accepted while submitted, a receipt that
#   moved block while mined); everything else is refused with `InvalidTransition`.
S, E = TxStatus, TxEvent
_STEPS: dict[tuple[TxStatus, TxEvent], TxStatus] = {
    (S.QUEUED, E.SIGNED): S.SIGNED,
    (S.QUEUED, E.FAILED): S.FAILED,
    (S.QUEUED, E.CANCELLED): S.CANCELLED,
    (S.QUEUED, E.EXPIRED): S.EXPIRED,
    (S.SIGNED, E.BROADCAST_ACCEPTED): S.SUBMITTED,
    # Only when no attempt can have reached a node; the caller releases or fills the nonce.
    (S.SIGNED, E.FAILED): S.FAILED,
    (S.SIGNED, E.NONCE_RELEASED): S.QUEUED,
    # A receipt can be seen before acceptance was recorded (crash between send and record, or
    # a node that answered with a timeout but took the tx). The receipt is proof enough, so the
    # tracker moves it straight to mined rather than inventing a broadcast_accepted step.
    (S.SIGNED, E.RECEIPT_FOUND): S.MINED,
    (S.SIGNED, E.CANCEL_WON): S.CANCELLED,
    (S.SUBMITTED, E.BROADCAST_ACCEPTED): S.SUBMITTED,
    (S.SUBMITTED, E.RECEIPT_FOUND): S.MINED,
    (S.SUBMITTED, E.CANCEL_WON): S.CANCELLED,
    # The nonce was consumed by a transaction that is not ours (key used elsewhere, DESIGN §6.7);
    # none of our attempts can execute any more, so the request fails with a distinct code.
    (S.SUBMITTED, E.FAILED): S.FAILED,
    (S.MINED, E.RECEIPT_FOUND): S.MINED,
    (S.MINED, E.RECEIPT_VANISHED): S.SUBMITTED,
    (S.MINED, E.CONFIRMED_SUCCESS): S.CONFIRMED,
    (S.MINED, E.CONFIRMED_REVERT): S.REVERTED,
    (S.MINED, E.CANCEL_WON): S.CANCELLED,
}
TERMINAL_STATUSES = frozenset({S.CONFIRMED, S.REVERTED, S.FAILED, S.CANCELLED, S.EXPIRED})


def transition(status: TxStatus, event: TxEvent) -> TxStatus:
    """Return the status after `event`.

    Raises:
        InvalidTransition: `event` is not allowed in `status`.
    """
    try:
        return _STEPS[(status, event)]
    except KeyError:
        raise InvalidTransition(
            f"a {status} transaction cannot take event {event}",
            status=status.value,
            event=event.value,
        ) from None


def is_terminal(status: TxStatus) -> bool:
    """Whether `status` is final: no event can move it again."""
    return status in TERMINAL_STATUSES
