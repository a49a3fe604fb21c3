"""The transaction state machine (DESIGN §5): one table of allowed (status, event) steps. Pure."""

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
    SIGNED = "signed"  # nonce assigned, signed bytes stored
    BROADCAST_ACCEPTED = "broadcast_accepted"  # a node took an attempt (or already had it)
    RECEIPT_FOUND = "receipt_found"  # an attempt has a receipt, not yet at depth
    RECEIPT_VANISHED = "receipt_vanished"  # reorg: the receipt is gone from the canonical chain
    CONFIRMED_SUCCESS = "confirmed_success"  # receipt status 1 at depth
    CONFIRMED_REVERT = "confirmed_revert"  # receipt status 0 at depth
    CANCEL_WON = "cancel_won"  # the 0-value self-transfer at our nonce reached depth
    FAILED = "failed"  # terminal error before any attempt reached a node
    NONCE_RELEASED = "nonce_released"  # signed, never reached a node: back to the queue
    CANCELLED = "cancelled"  # cancelled before signing
    EXPIRED = "expired"  # valid_until passed before signing


class InvalidTransition(Conflict):
    code = "invalid_transition"


S, E = TxStatus, TxEvent
_STEPS: dict[tuple[TxStatus, TxEvent], TxStatus] = {
    (S.QUEUED, E.SIGNED): S.SIGNED,
    (S.QUEUED, E.FAILED): S.FAILED,
    (S.QUEUED, E.CANCELLED): S.CANCELLED,
    (S.QUEUED, E.EXPIRED): S.EXPIRED,
    (S.SIGNED, E.BROADCAST_ACCEPTED): S.SUBMITTED,
    (S.SIGNED, E.FAILED): S.FAILED,
    (S.SIGNED, E.NONCE_RELEASED): S.QUEUED,
    # A receipt can be seen before acceptance was recorded (crash between send and record).
    (S.SIGNED, E.RECEIPT_FOUND): S.MINED,
    (S.SUBMITTED, E.BROADCAST_ACCEPTED): S.SUBMITTED,
    (S.SUBMITTED, E.RECEIPT_FOUND): S.MINED,
    # The nonce was consumed by a transaction that is not ours (key used elsewhere).
    (S.SUBMITTED, E.FAILED): S.FAILED,
    (S.MINED, E.RECEIPT_FOUND): S.MINED,
    (S.MINED, E.RECEIPT_VANISHED): S.SUBMITTED,
    (S.MINED, E.CONFIRMED_SUCCESS): S.CONFIRMED,
    (S.MINED, E.CONFIRMED_REVERT): S.REVERTED,
    (S.MINED, E.CANCEL_WON): S.CANCELLED,
}
TERMINAL_STATUSES = frozenset({S.CONFIRMED, S.REVERTED, S.FAILED, S.CANCELLED, S.EXPIRED})


def transition(status: TxStatus, event: TxEvent) -> TxStatus:
    """The status after `event`. Raises: InvalidTransition."""
    try:
        return _STEPS[(status, event)]
    except KeyError:
        raise InvalidTransition(f"a {status} transaction cannot take event {event}") from None


def is_terminal(status: TxStatus) -> bool:
    return status in TERMINAL_STATUSES
