"""Bulk Core statements of the worker's hot paths: a signing round, a batch of broadcast
answers, a tracking round's receipts. Each writes many rows in a few executemany statements
instead of an ORM flush per row (the ORM stays for the rare paths)."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Integer, Row, Table, case, func, literal, update
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.types import TxId
from chainflow.domain.transactions import transitions
from chainflow.domain.transactions.models import AttemptStatus, Transaction, TxAttempt
from chainflow.domain.transactions.repository.states import (
    ATTEMPT_COLUMNS,
    ATTEMPTS_STORED,
    REQUEST_COLUMNS,
    first_sends,
)
from chainflow.domain.transactions.rows import (
    AcceptedUpdate,
    AttemptRow,
    MinedUpdate,
    ReceiptUpdate,
    RefusedUpdate,
    SentUpdate,
    SignedUpdate,
    Transition,
)
from chainflow.infra.db.bulk import insert_rows, update_rows
from chainflow.infra.db.params import one_of

_TRANSACTIONS = cast(Table, Transaction.__table__)
_ATTEMPTS = cast(Table, TxAttempt.__table__)


@dataclass
class SignWrites:
    """What one signing round writes: the attempt rows, and per request its transition
    (queued → signed) and its new status, nonce and gas limit."""

    attempts: list[AttemptRow] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    signed: list[SignedUpdate] = field(default_factory=list)


async def store_signed(session: AsyncSession, writes: SignWrites) -> None:
    """Write a signing round in three bulk statements (and the log's)."""
    if not writes.attempts:
        return
    attempts = await insert_rows(session, _ATTEMPTS, writes.attempts, returning=ATTEMPT_COLUMNS)
    # A request requeued after a refusal has earlier attempts: the log reads its attempts.
    requests = await update_rows(
        session, _TRANSACTIONS, writes.signed, returning=[*REQUEST_COLUMNS, ATTEMPTS_STORED]
    )
    await transitions.log(session, writes.transitions, requests=requests, attempts=attempts)


@dataclass
class SendWrites:
    """What one batch of broadcasts changes: attempts a node accepted or refused, and the
    requests that moved to submitted (their transitions)."""

    accepted: list[AcceptedUpdate] = field(default_factory=list)
    refused: list[RefusedUpdate] = field(default_factory=list)
    moved: list[SentUpdate] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)


async def store_sends(session: AsyncSession, writes: SendWrites) -> None:
    """Write a batch of broadcast answers in at most five bulk statements."""
    attempts = _ATTEMPTS.c
    # The attempts as written, for the snapshots (None on SQLite: read back).
    written: list[Row[Any]] | None = []
    if writes.accepted:
        got = await update_rows(
            session,
            _ATTEMPTS,
            writes.accepted,
            returning=ATTEMPT_COLUMNS,
            types={"at": attempts.last_sent_at.type},
            values=lambda row: {
                "last_sent_at": row["at"],
                "first_sent_at": func.coalesce(attempts.first_sent_at, row["at"]),
                "broadcast_count": attempts.broadcast_count + literal(1),
                "last_error": None,
                "status": case(
                    (attempts.status == AttemptStatus.SIGNED.value, AttemptStatus.SUBMITTED.value),
                    else_=attempts.status,
                ),
            },
        )
        written = None if got is None else [*got]
    if writes.refused:
        got = await update_rows(
            session,
            _ATTEMPTS,
            writes.refused,
            returning=ATTEMPT_COLUMNS,
            types={
                "at": attempts.last_sent_at.type,
                "sent": Integer(),
                "error": attempts.last_error.type,
            },
            values=lambda row: {
                "last_sent_at": row["at"],
                "broadcast_count": attempts.broadcast_count + row["sent"],
                "last_error": row["error"],
            },
        )
        written = None if got is None or written is None else [*written, *got]
    if writes.moved:
        # A request's attempts not sent in this batch (a requeued request's earlier ones):
        # ATTEMPTS_STORED tells the log to read them.
        moved = await update_rows(
            session, _TRANSACTIONS, writes.moved, returning=[*REQUEST_COLUMNS, ATTEMPTS_STORED]
        )
        await transitions.log(session, writes.transitions, requests=moved, attempts=written)


@dataclass
class ReceiptWrites:
    """What one tracking round records: mined requests (their receipt columns, see
    confirming.py), their attempts, requests whose attempts only get the head stamped as
    their first-seen block, and the transitions of the mined requests."""

    head: int
    requests: list[ReceiptUpdate] = field(default_factory=list)
    attempts: list[MinedUpdate] = field(default_factory=list)
    stamped: list[TxId] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)


_RECEIPT_COLUMNS = (
    "status",
    "final_hash",
    "block_hash",
    "block_number",
    "gas_used",
    "effective_gas_price_wei",
    "receipt_status",
    "confirmations",
    "updated_at",
)


async def store_receipts(session: AsyncSession, writes: ReceiptWrites) -> dict[TxId, datetime]:
    """Write a tracking round's receipts in at most four bulk statements. Returns when a node
    first accepted each mined request that was sent, as its attempts are now (the tracker's
    read of a request may predate the record of its send): from the attempts' RETURNING, read
    back on SQLite."""
    attempts = _ATTEMPTS.c
    # An attempt a node accepted is stamped with the first head seen after it (the start of
    # its stuck-after-N-blocks count); never re-stamped.
    stamp = case(
        (
            attempts.first_sent_at.is_not(None) & attempts.sent_at_block.is_(None),
            literal(writes.head),
        ),
        else_=attempts.sent_at_block,
    )
    if writes.stamped:
        await session.execute(
            update(_ATTEMPTS)
            .where(one_of(session, attempts.tx_id, writes.stamped))
            .values(sent_at_block=stamp)
        )
    if not writes.requests:
        return {}
    # Every attempt of each mined request (the key is its tx_id), as written: with the
    # requests' RETURNING, the snapshots need no read-back (none on SQLite: read back).
    attempts_written = await update_rows(
        session,
        _ATTEMPTS,
        writes.attempts,
        key="tx_id",
        returning=ATTEMPT_COLUMNS,
        types={"mined": attempts.id.type},
        values=lambda row: {
            "sent_at_block": stamp,
            "status": case(
                (attempts.id == row["mined"], AttemptStatus.MINED.value),
                else_=AttemptStatus.REPLACED.value,
            ),
        },
    )
    t = _TRANSACTIONS.c

    def receipt(row: Mapping[str, ColumnElement[Any]]) -> dict[str, ColumnElement[Any]]:
        values = {name: row[name] for name in _RECEIPT_COLUMNS}
        values["error_code"] = func.coalesce(row["error_code"], t.error_code)
        values["error_message"] = func.coalesce(row["error_message"], t.error_message)
        return values

    requests = await update_rows(
        session, _TRANSACTIONS, writes.requests, values=receipt, returning=REQUEST_COLUMNS
    )
    await transitions.log(session, writes.transitions, requests=requests, attempts=attempts_written)
    return await first_sends(session, [row["tx_id"] for row in writes.attempts], attempts_written)
