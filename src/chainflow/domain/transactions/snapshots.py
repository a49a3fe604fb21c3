"""The `transaction` of an event's data: a request as GET /v1/transactions/{id} renders it
(TxRead without `events`), as of one status change.

Rendered by hand rather than through TxRead: every status change of every request makes one,
on the engine's hot paths, and the pydantic model costs several times more CPU per snapshot
(tests/unit/transactions/test_snapshots.py holds the two to the same JSON).
"""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from chainflow.domain.events.schemas import rfc3339
from chainflow.domain.transactions.rows import NewRequest, Transition
from chainflow.domain.transactions.state import TxStatus

Snapshot = dict[str, Any]


class AttemptState(Protocol):
    """A tx_attempts row: a TxAttempt, or a Core row of that table."""

    @property
    def hash(self) -> str: ...
    @property
    def kind(self) -> Any: ...
    @property
    def status(self) -> Any: ...
    @property
    def nonce(self) -> int: ...
    @property
    def gas_limit(self) -> int: ...
    @property
    def max_fee_per_gas_wei(self) -> int | None: ...
    @property
    def max_priority_fee_per_gas_wei(self) -> int | None: ...
    @property
    def gas_price_wei(self) -> int | None: ...
    @property
    def broadcast_count(self) -> int: ...
    @property
    def first_sent_at(self) -> datetime | None: ...
    @property
    def last_sent_at(self) -> datetime | None: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...


class RequestState(Protocol):
    """A transactions row: a Transaction, or a Core row of that table."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def chain_id(self) -> int: ...
    @property
    def wallet_id(self) -> uuid.UUID: ...
    @property
    def from_address(self) -> str: ...
    @property
    def to_address(self) -> str: ...
    @property
    def value_wei(self) -> int: ...
    @property
    def data(self) -> bytes: ...
    @property
    def nonce(self) -> int | None: ...
    @property
    def final_hash(self) -> str | None: ...
    @property
    def cancel_requested(self) -> bool: ...
    @property
    def block_number(self) -> int | None: ...
    @property
    def block_hash(self) -> str | None: ...
    @property
    def gas_used(self) -> int | None: ...
    @property
    def effective_gas_price_wei(self) -> int | None: ...
    @property
    def receipt_status(self) -> int | None: ...
    @property
    def confirmations(self) -> int: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def error_message(self) -> str | None: ...
    @property
    def valid_until(self) -> datetime | None: ...
    @property
    def created_at(self) -> datetime: ...


def event_data(transition: Transition, snapshot: Snapshot) -> dict[str, Any]:
    """The data of a `transaction.*` event: the snapshot and the status before."""
    return {"transaction": snapshot, "previous_status": transition.before.value}


def snapshot(
    tx: RequestState,
    attempts: Sequence[AttemptState],
    *,
    status: TxStatus,
    updated_at: datetime,
) -> Snapshot:
    """`tx` with these attempts (in creation order), in `status` since `updated_at`."""
    return {
        "id": str(tx.id),
        "chain_id": tx.chain_id,
        "wallet_id": str(tx.wallet_id),
        "from": tx.from_address,
        "to": tx.to_address,
        "value": str(tx.value_wei),
        "data": "0x" + tx.data.hex(),
        "status": status.value,
        "nonce": tx.nonce,
        "hash": tx.final_hash or (attempts[-1].hash if attempts else None),
        "cancel_requested": tx.cancel_requested,
        "attempts": [_attempt(a) for a in attempts],
        "receipt": _receipt(tx),
        "confirmations": tx.confirmations,
        "error": {"code": tx.error_code, "message": tx.error_message or ""}
        if tx.error_code
        else None,
        "valid_until": _time(tx.valid_until),
        "created_at": rfc3339(tx.created_at),
        "updated_at": rfc3339(updated_at),
    }


# The columns of a Core row that `snapshot_row` renders, in this order (a prefix of the row:
# repository/states.py's REQUEST_COLUMNS and ATTEMPT_COLUMNS are built from these names).
REQUEST_FIELDS = (
    "id",
    "chain_id",
    "wallet_id",
    "from_address",
    "to_address",
    "value_wei",
    "data",
    "nonce",
    "final_hash",
    "cancel_requested",
    "block_number",
    "block_hash",
    "gas_used",
    "effective_gas_price_wei",
    "receipt_status",
    "confirmations",
    "error_code",
    "error_message",
    "valid_until",
    "created_at",
    "updated_at",
)
ATTEMPT_FIELDS = (
    "tx_id",
    "id",
    "hash",
    "kind",
    "status",
    "nonce",
    "gas_limit",
    "max_fee_per_gas_wei",
    "max_priority_fee_per_gas_wei",
    "gas_price_wei",
    "broadcast_count",
    "first_sent_at",
    "last_sent_at",
    "last_error",
    "created_at",
)
_REQUEST_WIDTH = len(REQUEST_FIELDS)
_ATTEMPT_WIDTH = len(ATTEMPT_FIELDS)


def has_row_layout(requests: Sequence[Any], attempts: Sequence[Any]) -> bool:
    """Whether these Core rows (one result each) start with REQUEST_FIELDS and
    ATTEMPT_FIELDS, as `snapshot_row` reads them."""
    return (not requests or requests[0]._fields[:_REQUEST_WIDTH] == REQUEST_FIELDS) and (
        not attempts or attempts[0]._fields[:_ATTEMPT_WIDTH] == ATTEMPT_FIELDS
    )


def snapshot_row(
    tx: Sequence[Any], attempts: Sequence[Sequence[Any]], *, status: TxStatus, updated_at: datetime
) -> Snapshot:
    """`snapshot` of Core rows laid out as REQUEST_FIELDS and ATTEMPT_FIELDS, by position: a
    Row's attribute lookup by name costs ~20 times its index, and the status-change log
    renders ~35 columns per snapshot (the same JSON: tests/unit/domain/transactions/
    test_snapshots.py)."""
    (
        tx_id,
        chain_id,
        wallet_id,
        from_address,
        to_address,
        value_wei,
        data,
        nonce,
        final_hash,
        cancel_requested,
        block_number,
        block_hash,
        gas_used,
        effective_gas_price_wei,
        receipt_status,
        confirmations,
        error_code,
        error_message,
        valid_until,
        created_at,
    ) = tx[: _REQUEST_WIDTH - 1]
    return {
        "id": str(tx_id),
        "chain_id": chain_id,
        "wallet_id": str(wallet_id),
        "from": from_address,
        "to": to_address,
        "value": str(value_wei),
        "data": "0x" + data.hex(),
        "status": status.value,
        "nonce": nonce,
        "hash": final_hash or (attempts[-1][2] if attempts else None),
        "cancel_requested": cancel_requested,
        "attempts": [_attempt_row(a) for a in attempts],
        "receipt": None
        if block_number is None or block_hash is None
        else {
            "block_number": block_number,
            "block_hash": block_hash,
            "gas_used": gas_used,
            "effective_gas_price": _wei(effective_gas_price_wei),
            "status": receipt_status or 0,
        },
        "confirmations": confirmations,
        "error": {"code": error_code, "message": error_message or ""} if error_code else None,
        "valid_until": None if valid_until is None else rfc3339(valid_until),
        "created_at": rfc3339(created_at),
        "updated_at": rfc3339(updated_at),
    }


def _attempt_row(a: Sequence[Any]) -> dict[str, Any]:
    (
        _,
        _,
        hash_,
        kind,
        status,
        nonce,
        gas_limit,
        max_fee,
        max_priority_fee,
        gas_price,
        broadcast_count,
        first_sent_at,
        last_sent_at,
        last_error,
        created_at,
    ) = a[:_ATTEMPT_WIDTH]
    return {
        "hash": hash_,
        "kind": _value(kind),
        "status": _value(status),
        "nonce": nonce,
        "gas_limit": gas_limit,
        "max_fee_per_gas": None if max_fee is None else str(max_fee),
        "max_priority_fee_per_gas": None if max_priority_fee is None else str(max_priority_fee),
        "gas_price": None if gas_price is None else str(gas_price),
        "broadcast_count": broadcast_count,
        "first_sent_at": None if first_sent_at is None else rfc3339(first_sent_at),
        "last_sent_at": None if last_sent_at is None else rfc3339(last_sent_at),
        "error_class": last_error,
        "created_at": None if created_at is None else rfc3339(created_at),
    }


def queued_snapshot(request: NewRequest) -> Snapshot:
    """A request as just stored: queued, nothing signed."""
    return queued_fields(request) | {
        "valid_until": _time(request.valid_until),
        "created_at": rfc3339(request.created_at),
        "updated_at": rfc3339(request.updated_at),
    }


def queued_fields(request: NewRequest) -> Snapshot:
    """A request as just stored but for its times, in TxRead's order: the fields its
    snapshot and the answer to its submission (schemas.queued_json) share."""
    return {
        "id": str(request.id),
        "chain_id": request.chain_id,
        "wallet_id": str(request.wallet_id),
        "from": request.from_address,
        "to": request.to_address,
        "value": str(request.value_wei),
        "data": "0x" + request.data.hex(),
        "status": request.status.value,
        "nonce": None,
        "hash": None,
        "cancel_requested": request.cancel_requested,
        "attempts": [],
        "receipt": None,
        "confirmations": request.confirmations,
        "error": None,
    }


def _attempt(a: AttemptState) -> dict[str, Any]:
    return {
        "hash": a.hash,
        "kind": _value(a.kind),
        "status": _value(a.status),
        "nonce": a.nonce,
        "gas_limit": a.gas_limit,
        "max_fee_per_gas": _wei(a.max_fee_per_gas_wei),
        "max_priority_fee_per_gas": _wei(a.max_priority_fee_per_gas_wei),
        "gas_price": _wei(a.gas_price_wei),
        "broadcast_count": a.broadcast_count,
        "first_sent_at": _time(a.first_sent_at),
        "last_sent_at": _time(a.last_sent_at),
        "error_class": a.last_error,
        "created_at": _time(a.created_at),
    }


def _receipt(tx: RequestState) -> dict[str, Any] | None:
    if tx.block_number is None or tx.block_hash is None:
        return None
    return {
        "block_number": tx.block_number,
        "block_hash": tx.block_hash,
        "gas_used": tx.gas_used,
        "effective_gas_price": _wei(tx.effective_gas_price_wei),
        "status": tx.receipt_status or 0,
    }


def _value(enum_or_text: Any) -> str:
    # An ORM row holds the StrEnum, a Core row of a non-native Enum column the enum too.
    return str(getattr(enum_or_text, "value", enum_or_text))


def _wei(value: int | None) -> str | None:
    return None if value is None else str(value)


def _time(at: datetime | None) -> str | None:
    return None if at is None else rfc3339(at)
