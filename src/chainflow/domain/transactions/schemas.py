"""API shapes of transaction requests."""

import uuid
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from chainflow.core.bodies import RequestBody
from chainflow.core.fields import AddressStr, ChainId, UtcTimestamp, WalletRef, WeiStr
from chainflow.domain.transactions.calldata_size import MAX_CALLDATA_BYTES
from chainflow.domain.transactions.models import Transaction, TxAttempt
from chainflow.domain.transactions.rows import NewRequest
from chainflow.domain.transactions.snapshots import queued_fields
from chainflow.domain.transactions.state import TxStatus

_TRANSFER_EXAMPLE: dict[str, JsonValue] = {
    "chain_id": 31337,
    "wallet": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "to": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "value": "1000000000000000",
}
_CALL_EXAMPLE: dict[str, JsonValue] = {
    "chain_id": 31337,
    "wallet": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "to": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    "function": "transfer(address,uint256)",
    "args": ["0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "1000000"],
}


class TxCreate(RequestBody):
    """A native transfer, a call with raw `data`, or a call by `function` signature and `args`."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [_TRANSFER_EXAMPLE, _CALL_EXAMPLE]}
    )

    chain_id: ChainId
    wallet: WalletRef = Field(description="wallet id or address")
    to: AddressStr
    value: WeiStr = 0
    data: str | None = Field(
        None, description=f"0x-prefixed calldata, at most {MAX_CALLDATA_BYTES} bytes"
    )
    function: str | None = Field(None, max_length=1000, examples=["transfer(address,uint256)"])
    args: list[Any] | None = None
    gas_limit: int | None = Field(None, ge=21_000, le=100_000_000)
    max_fee_per_gas: WeiStr | None = Field(None, description="cap for this request, in wei")
    max_priority_fee_per_gas: WeiStr | None = Field(None, description="tip cap, in wei")
    valid_until: UtcTimestamp | None = Field(None, description="expire if not signed by then")

    @field_validator("data")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value) > 2 + 2 * MAX_CALLDATA_BYTES:  # before the scan below, which is linear
            raise ValueError(f"calldata is limited to {MAX_CALLDATA_BYTES} bytes")
        digits = value.removeprefix("0x")
        if not value.startswith("0x") or len(digits) % 2 or not _is_hex(digits):
            raise ValueError("must be 0x-prefixed hex with an even number of digits")
        return value.lower()

    @model_validator(mode="after")
    def _one_payload(self) -> "TxCreate":
        if self.data is not None and self.function is not None:
            raise ValueError("give data or function + args, not both")
        if self.args is not None and self.function is None:
            raise ValueError("args need a function signature")
        return self


class TxBatchCreate(RequestBody):
    """Up to 500 requests stored at once, all or none (any item's error fails the batch)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"transactions": [_TRANSFER_EXAMPLE]}]}
    )

    transactions: list[TxCreate] = Field(min_length=1, max_length=500)


def _is_hex(digits: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in digits)


class AttemptRead(BaseModel):
    hash: str
    kind: str
    status: str
    nonce: int
    gas_limit: int
    max_fee_per_gas: WeiStr | None
    max_priority_fee_per_gas: WeiStr | None
    gas_price: WeiStr | None
    broadcast_count: int
    first_sent_at: datetime | None
    last_sent_at: datetime | None
    error_class: str | None = Field(
        None, description="class of the node's last error answer to a send of this attempt"
    )
    created_at: datetime | None = Field(None, description="when it was signed")

    @classmethod
    def of(cls, a: TxAttempt) -> "AttemptRead":
        return cls(
            hash=a.hash,
            kind=a.kind.value,
            status=a.status.value,
            nonce=a.nonce,
            gas_limit=a.gas_limit,
            max_fee_per_gas=a.max_fee_per_gas_wei,
            max_priority_fee_per_gas=a.max_priority_fee_per_gas_wei,
            gas_price=a.gas_price_wei,
            broadcast_count=a.broadcast_count,
            first_sent_at=a.first_sent_at,
            error_class=a.last_error,
            created_at=a.created_at,
            last_sent_at=a.last_sent_at,
        )


class EventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # read from a TxEventRow as it is

    from_status: str | None
    to_status: str
    at: datetime
    detail: dict[str, object] | None


class ReceiptRead(BaseModel):
    block_number: int
    block_hash: str
    gas_used: int | None
    effective_gas_price: WeiStr | None
    status: int


class ErrorRead(BaseModel):
    code: str
    message: str


class TxRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "6f1c3a8e-2b9d-4d1e-9a7c-0e5b8f3d2a11",
                    "chain_id": 31337,
                    "wallet_id": "0b9c2a5e-7d7e-4c3f-9a43-3f8b1b6c2d10",
                    "from": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
                    "to": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
                    "value": "1000000000000000",
                    "data": "0x",
                    "status": "confirmed",
                    "nonce": 7,
                    "hash": "0x" + "ab" * 32,
                    "attempts": [],
                    "receipt": None,
                    "confirmations": 2,
                    "error": None,
                    "events": [],
                    "created_at": "2026-11-23T12:00:00Z",
                    "updated_at": "2026-11-23T12:00:03Z",
                }
            ]
        },
        populate_by_name=True,
    )

    id: uuid.UUID
    chain_id: int
    wallet_id: uuid.UUID
    from_: str = Field(alias="from")
    to: str
    value: WeiStr
    data: str
    status: TxStatus
    nonce: int | None
    hash: str | None
    cancel_requested: bool
    attempts: list[AttemptRead]
    receipt: ReceiptRead | None
    confirmations: int
    error: ErrorRead | None
    events: list[EventRead]
    valid_until: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, tx: Transaction) -> "TxRead":
        """The view of a transaction with attempts and events loaded."""
        return cls(
            id=tx.id,
            chain_id=tx.chain_id,
            wallet_id=tx.wallet_id,
            from_=tx.from_address,
            to=tx.to_address,
            value=tx.value_wei,
            data="0x" + tx.data.hex(),
            status=tx.status,
            nonce=tx.nonce,
            hash=tx.final_hash or _latest_hash(tx),
            cancel_requested=tx.cancel_requested,
            attempts=[AttemptRead.of(a) for a in tx.attempts],
            receipt=_receipt(tx),
            confirmations=tx.confirmations,
            error=ErrorRead(code=tx.error_code, message=tx.error_message or "")
            if tx.error_code
            else None,
            events=[EventRead.model_validate(e) for e in tx.events],
            valid_until=tx.valid_until,
            created_at=tx.created_at,
            updated_at=tx.updated_at,
        )

    @classmethod
    def queued(cls, request: NewRequest) -> "TxRead":
        """The view of a request just queued: no attempts, one `queued` event."""
        created = EventRead(
            from_status=None, to_status=request.status.value, at=request.created_at, detail=None
        )
        return cls(
            id=request.id,
            chain_id=request.chain_id,
            wallet_id=request.wallet_id,
            from_=request.from_address,
            to=request.to_address,
            value=request.value_wei,
            data="0x" + request.data.hex(),
            status=request.status,
            nonce=None,
            hash=None,
            cancel_requested=False,
            attempts=[],
            receipt=None,
            confirmations=0,
            error=None,
            events=[created],
            valid_until=request.valid_until,
            created_at=request.created_at,
            updated_at=request.updated_at,
        )


def queued_json(request: NewRequest) -> bytes:
    """`TxRead.queued(request)` as JSON by alias, byte for byte, without building the models
    (their validation and serialization were ~25 µs of each single submission's answer, 5
    this way; docs/performance.md item 41). orjson writes times as pydantic does, `Z` for
    UTC and any other offset as given (tests/unit/domain/transactions/test_queued_json.py)."""
    created = {"from_status": None, "to_status": request.status.value, "at": request.created_at}
    times = {
        "events": [created | {"detail": None}],
        "valid_until": request.valid_until,
        "created_at": request.created_at,
        "updated_at": request.updated_at,
    }
    return orjson.dumps(queued_fields(request) | times, option=orjson.OPT_UTC_Z)


def _latest_hash(tx: Transaction) -> str | None:
    return tx.attempts[-1].hash if tx.attempts else None


def _receipt(tx: Transaction) -> ReceiptRead | None:
    if tx.block_number is None or tx.block_hash is None:
        return None
    return ReceiptRead(
        block_number=tx.block_number,
        block_hash=tx.block_hash,
        gas_used=tx.gas_used,
        effective_gas_price=tx.effective_gas_price_wei,
        status=tx.receipt_status or 0,
    )


class TxSummary(BaseModel):
    id: uuid.UUID
    chain_id: int
    wallet_id: uuid.UUID
    to: str
    value: WeiStr
    status: TxStatus
    nonce: int | None
    hash: str | None
    created_at: datetime

    @classmethod
    def of(cls, tx: Transaction) -> "TxSummary":
        return cls(
            id=tx.id,
            chain_id=tx.chain_id,
            wallet_id=tx.wallet_id,
            to=tx.to_address,
            value=tx.value_wei,
            status=tx.status,
            nonce=tx.nonce,
            hash=tx.final_hash,
            created_at=tx.created_at,
        )


class TxList(BaseModel):
    items: list[TxSummary]
    next_cursor: str | None = None


class TxBatchRead(BaseModel):
    """The stored requests, in the order they were given."""

    items: list[TxRead]
