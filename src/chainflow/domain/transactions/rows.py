"""Typed rows of the three tables (models.py): what a Core statement writes, one builder per
table. The ORM path and the bulk path share them, so strict mypy checks the column contract
that used to live in docstrings."""

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import NotRequired, TypedDict

from chainflow.core.types import AttemptId, ChainId, Nonce, TxHash, TxId, WalletId, Wei
from chainflow.domain.transactions.models import (
    AttemptKind,
    AttemptStatus,
    EventDetail,
    TxKind,
)
from chainflow.domain.transactions.state import TxEvent, TxStatus


@dataclass(frozen=True)
class Transition:
    """One checked step of the state machine of one request: the new status and the event
    row that logs it (transitions.py makes these, and is the only writer of them)."""

    tx_id: TxId
    before: TxStatus
    after: TxStatus
    event: TxEvent
    at: datetime
    detail: EventDetail


class EventRow(TypedDict):
    """A tx_events row. A request's `created` row has no `detail` (given as None, the JSON
    column would store the JSON text 'null') and no `from_status`."""

    tx_id: TxId
    to_status: str
    at: datetime
    from_status: NotRequired[str | None]
    detail: NotRequired[EventDetail]


def event_row(transition: Transition) -> EventRow:
    """The tx_events row that logs `transition`."""
    return {
        "tx_id": transition.tx_id,
        "from_status": transition.before.value,
        "to_status": transition.after.value,
        "at": transition.at,
        "detail": {"event": transition.event.value, **transition.detail},
    }


def created_row(tx_id: TxId, status: TxStatus, at: datetime) -> EventRow:
    """The tx_events row of a new request."""
    return {"tx_id": tx_id, "to_status": status.value, "at": at}


class AttemptRow(TypedDict):
    """A tx_attempts row as signed: nothing sent yet."""

    id: AttemptId
    tx_id: TxId
    kind: AttemptKind
    status: AttemptStatus
    nonce: Nonce
    gas_limit: int
    max_fee_per_gas_wei: Wei | None
    max_priority_fee_per_gas_wei: Wei | None
    gas_price_wei: Wei | None
    raw: bytes
    hash: TxHash
    broadcast_count: int
    created_at: datetime


@dataclass(frozen=True)
class NewRequest:
    """A transactions row as a submission inserts it; its names are the table's columns."""

    id: TxId
    kind: TxKind
    api_key_id: uuid.UUID | None
    idempotency_key: str | None
    request_hash: str
    chain_id: ChainId
    wallet_id: WalletId
    from_address: str
    to_address: str
    value_wei: Wei
    data: bytes
    gas_limit: int | None
    max_fee_per_gas_cap: Wei | None
    max_priority_fee_per_gas_cap: Wei | None
    valid_until: datetime | None
    status: TxStatus
    cancel_requested: bool
    confirmations: int
    created_at: datetime
    updated_at: datetime


REQUEST_COLUMNS = tuple(field.name for field in fields(NewRequest))


def request_row(request: NewRequest) -> dict[str, object]:
    """The bind values of a new request's transactions row (NewRequest is the typed row)."""
    # Not dataclasses.asdict: it deep-copies every value (4% of the API's CPU per submission).
    return {name: getattr(request, name) for name in REQUEST_COLUMNS}


# Bulk UPDATEs of the transactions table. The `status` of each comes from a Transition (or is
# the locked current one, for a receipt that only moved deeper): no bulk path computes one.


class SignedUpdate(TypedDict):
    """A request signed in a drain: its status, nonce and gas limit."""

    id: TxId
    status: TxStatus
    nonce: Nonce
    gas_limit: int
    updated_at: datetime


def signed_update(transition: Transition, *, nonce: Nonce, gas_limit: int) -> SignedUpdate:
    return {
        "id": transition.tx_id,
        "status": transition.after,
        "nonce": nonce,
        "gas_limit": gas_limit,
        "updated_at": transition.at,
    }


class SentUpdate(TypedDict):
    """A request a node accepted: signed → submitted."""

    id: TxId
    status: TxStatus
    updated_at: datetime


def sent_update(transition: Transition) -> SentUpdate:
    return {"id": transition.tx_id, "status": transition.after, "updated_at": transition.at}


class ReceiptUpdate(TypedDict):
    """A mined request's receipt columns; an error is only written when there is one."""

    id: TxId
    status: TxStatus
    final_hash: TxHash
    block_hash: str
    block_number: int
    gas_used: int | None
    effective_gas_price_wei: Wei | None
    receipt_status: int | None
    confirmations: int
    error_code: str | None
    error_message: str | None
    updated_at: datetime


# Bulk UPDATEs of the tx_attempts table.


class AcceptedUpdate(TypedDict):
    """An attempt a node accepted (or already had) at `at`."""

    id: AttemptId
    at: datetime


class RefusedUpdate(TypedDict):
    """An attempt a node refused at `at`: `sent` is 1 when it may have reached it anyway."""

    id: AttemptId
    at: datetime
    sent: int
    error: str | None


class MinedUpdate(TypedDict):
    """The attempts of a mined request: `mined` is the one with the receipt."""

    tx_id: TxId
    mined: AttemptId


# What a drain's plan reads of each queued request it may sign (repository.queued_for_lanes):
# the columns the estimate, the signature and the status change read, as plain frozen rows.
# A Core read, not ORM instances: loading a window of 64 requests per lane as ORM rows (the
# identity map, the instrumented attributes, the session's bookkeeping at commit) was the
# largest Python step of planning (docs/performance.md, item 42).


@dataclass(frozen=True, slots=True)
class Queued:
    """A queued request as a drain's plan read it; a snapshot, never written back (its
    columns do not change while it stays queued: a cancel moves it out of `queued`)."""

    id: TxId
    wallet_id: WalletId
    status: TxStatus
    from_address: str
    to_address: str
    value_wei: Wei
    data: bytes
    gas_limit: int | None
    max_fee_per_gas_cap: Wei | None
    max_priority_fee_per_gas_cap: Wei | None
    valid_until: datetime | None


QUEUED_COLUMNS = tuple(f.name for f in fields(Queued))


# What the tracker reads of each request in flight every round (repository.tracked): the
# columns its decisions, revert replays, metrics and logs read, as plain frozen rows. A Core
# read, not ORM instances: the ORM's identity map and attribute instrumentation of every
# request in flight and its attempts, every round, were 8-13% of the tracking worker's CPU
# (docs/performance.md, item 26).


@dataclass(frozen=True, slots=True)
class InFlightAttempt:
    """A tx_attempts row of a request in flight (decisions.TrackedAttempt)."""

    id: AttemptId
    kind: AttemptKind
    nonce: Nonce
    gas_limit: int
    max_fee_per_gas_wei: Wei | None
    max_priority_fee_per_gas_wei: Wei | None
    gas_price_wei: Wei | None
    raw: bytes
    hash: TxHash
    first_sent_at: datetime | None
    last_sent_at: datetime | None
    sent_at_block: int | None
    last_error: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class InFlight:
    """A request between signing and finality, with its attempts in creation order
    (decisions.TrackedTx); a snapshot as of the round's read, never written back."""

    id: TxId
    chain_id: ChainId
    wallet_id: WalletId
    from_address: str
    to_address: str
    value_wei: Wei
    data: bytes
    status: TxStatus
    nonce: Nonce | None
    cancel_requested: bool
    max_fee_per_gas_cap: Wei | None
    max_priority_fee_per_gas_cap: Wei | None
    created_at: datetime
    attempts: tuple[InFlightAttempt, ...]


IN_FLIGHT_COLUMNS = tuple(f.name for f in fields(InFlight) if f.name != "attempts")
IN_FLIGHT_ATTEMPT_COLUMNS = tuple(f.name for f in fields(InFlightAttempt))
