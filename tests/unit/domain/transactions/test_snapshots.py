"""The status-change log's snapshots: `snapshot_row` (Core rows by position, the bulk paths)
renders the same JSON as `snapshot` (by name) and as GET's TxRead without its events."""

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from sqlalchemy.engine.result import result_tuple

from chainflow.core.ids import uuid4s
from chainflow.domain.transactions.models import Transaction, TxAttempt
from chainflow.domain.transactions.repository.states import (
    ATTEMPT_COLUMNS,
    ATTEMPTS_STORED,
    REQUEST_COLUMNS,
)
from chainflow.domain.transactions.schemas import TxRead
from chainflow.domain.transactions.snapshots import (
    ATTEMPT_FIELDS,
    REQUEST_FIELDS,
    has_row_layout,
    snapshot,
    snapshot_row,
)
from chainflow.domain.transactions.state import AttemptKind, AttemptStatus, TxStatus

AT = datetime(2026, 12, 6, 21, 0, 0, tzinfo=UTC)
REQUEST_ROW = result_tuple([c.name for c in REQUEST_COLUMNS] + [ATTEMPTS_STORED.name])
ATTEMPT_ROW = result_tuple([c.name for c in ATTEMPT_COLUMNS])


def attempt(tx_id: uuid.UUID, **changes: Any) -> TxAttempt:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "tx_id": tx_id,
        "kind": AttemptKind.ORIGINAL,
        "status": AttemptStatus.SUBMITTED,
        "nonce": 7,
        "gas_limit": 21_000,
        "max_fee_per_gas_wei": 2 * 10**9,
        "max_priority_fee_per_gas_wei": 10**9,
        "gas_price_wei": None,
        "raw": b"\x02",
        "hash": "0x" + "ab" * 32,
        "broadcast_count": 1,
        "first_sent_at": AT + timedelta(seconds=1),
        "last_sent_at": AT + timedelta(seconds=1, microseconds=250),
        "sent_at_block": None,
        "last_error": None,
        "created_at": AT + timedelta(microseconds=999_999),
    }
    return TxAttempt(**(values | changes))


def request(attempts: list[TxAttempt], **changes: Any) -> Transaction:
    values: dict[str, Any] = {
        "id": attempts[0].tx_id if attempts else uuid.uuid4(),
        "chain_id": 31337,
        "wallet_id": uuid.uuid4(),
        "from_address": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "to_address": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "value_wei": 10**30,  # beyond 64 bits
        "data": bytes.fromhex("a9059cbb00ff"),
        "status": TxStatus.SUBMITTED,
        "nonce": 7 if attempts else None,
        "cancel_requested": False,
        "final_hash": None,
        "block_number": None,
        "block_hash": None,
        "gas_used": None,
        "effective_gas_price_wei": None,
        "receipt_status": None,
        "confirmations": 0,
        "error_code": None,
        "error_message": None,
        "valid_until": None,
        "created_at": AT,
        "updated_at": AT + timedelta(seconds=2, microseconds=10),
    }
    tx = Transaction(**(values | changes))
    tx.attempts = attempts
    tx.events = []
    return tx


def rows_of(tx: Transaction) -> tuple[Any, list[Any]]:
    """`tx` and its attempts as the bulk paths' RETURNING gives them."""
    row = REQUEST_ROW([getattr(tx, name) for name in REQUEST_FIELDS] + [len(tx.attempts)])
    attempts = [ATTEMPT_ROW([getattr(a, name) for name in ATTEMPT_FIELDS]) for a in tx.attempts]
    return row, attempts


def cases() -> list[Transaction]:
    tx_id = uuid.uuid4()
    bumped = [
        attempt(tx_id, status=AttemptStatus.REPLACED, last_error="underpriced"),
        attempt(
            tx_id,
            kind=AttemptKind.BUMP,
            hash="0x" + "cd" * 32,
            status=AttemptStatus.MINED,
            max_fee_per_gas_wei=None,
            max_priority_fee_per_gas_wei=None,
            gas_price_wei=3 * 10**9,
            first_sent_at=None,
            last_sent_at=None,
            created_at=AT + timedelta(seconds=5),
        ),
    ]
    signed_id = uuid.uuid4()
    return [
        request([], status=TxStatus.QUEUED, data=b"", value_wei=0, valid_until=AT),
        request(
            [attempt(signed_id, status=AttemptStatus.SIGNED, broadcast_count=0)],
            status=TxStatus.SIGNED,
        ),
        request(
            bumped,
            status=TxStatus.CONFIRMED,
            final_hash="0x" + "cd" * 32,
            block_number=12,
            block_hash="0x" + "ef" * 32,
            gas_used=21_000,
            effective_gas_price_wei=3 * 10**9,
            receipt_status=0,
            confirmations=1,
            error_code="reverted",
            error_message=None,
            cancel_requested=True,
            valid_until=AT + timedelta(hours=1),
        ),
        request(  # a receipt without a status: shown as 0
            [attempt(uuid.uuid4(), status=AttemptStatus.MINED)],
            status=TxStatus.MINED,
            block_number=12,
            block_hash="0x" + "ef" * 32,
            error_code="x",
            error_message="why",
        ),
    ]


@pytest.mark.parametrize("tx", cases(), ids=["queued", "signed", "bumped-reverted", "no-status"])
def test_row_snapshot_is_the_named_one_and_the_api_view(tx: Transaction) -> None:
    row, attempts = rows_of(tx)
    assert has_row_layout([row], attempts)
    by_row = snapshot_row(row, attempts, status=tx.status, updated_at=tx.updated_at)
    by_name = snapshot(tx, tx.attempts, status=tx.status, updated_at=tx.updated_at)
    view = TxRead.of(tx).model_dump(mode="json", by_alias=True)
    del view["events"]
    # The same keys in the same order, so the stored JSON text is the same too.
    assert orjson.dumps(by_row) == orjson.dumps(by_name)
    assert json.loads(orjson.dumps(by_row)) == view
    assert list(by_row) == list(view)


def test_times_not_in_utc_render_in_utc_like_the_named_snapshot() -> None:
    plus_two = timezone(timedelta(hours=2))
    (tx,) = [c for c in cases() if c.attempts and len(c.attempts) == 2]
    local = request(
        [attempt(tx.id, created_at=AT.astimezone(plus_two), last_sent_at=AT.astimezone(plus_two))],
        created_at=AT.astimezone(plus_two),
        valid_until=(AT + timedelta(minutes=1)).astimezone(plus_two),
    )
    row, attempts = rows_of(local)
    updated = AT.astimezone(plus_two)
    shown = snapshot_row(row, attempts, status=TxStatus.SUBMITTED, updated_at=updated)
    assert shown == snapshot(local, local.attempts, status=TxStatus.SUBMITTED, updated_at=updated)
    assert shown["created_at"] == "2026-12-06T21:00:00Z"
    assert shown["valid_until"] == "2026-12-06T21:01:00Z"


def test_rows_laid_out_otherwise_are_not_read_by_position() -> None:
    other = result_tuple(["chain_id", "id"])
    (tx,) = [c for c in cases() if c.status is TxStatus.SIGNED]
    row, attempts = rows_of(tx)
    assert has_row_layout([], [])
    assert not has_row_layout([other([1, tx.id])], attempts)
    assert not has_row_layout([row], [other([1, tx.id])])


def test_uuid4s_are_random_version_4_uuids() -> None:
    ids = uuid4s(1000)
    assert len(set(ids)) == 1000
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in ids)
    assert uuid4s(0) == []
    # Every one of the 122 random bits varies.
    assert len({(u.int >> bit) & 1 for u in ids for bit in range(128)}) == 2
    free = (1 << 128) - 1 - ((0xC000 << 48) | (0xF000 << 64))
    seen = 0
    for u in ids:
        seen |= u.int & free
    assert seen == free
