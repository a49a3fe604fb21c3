"""Bulk Core statements of the worker's hot paths: a signing round, a batch of broadcast
answers, a tracking round's receipts. Each writes many rows in a few executemany statements
instead of an ORM flush per row (the ORM stays for the rare paths)."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, bindparam, case, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.domain.transactions.models import AttemptStatus, Transaction, TxAttempt, TxEventRow
from chainflow.domain.transactions.state import TxStatus
from chainflow.infra.db.params import in_list

_TRANSACTIONS = cast(Table, Transaction.__table__)
_ATTEMPTS = cast(Table, TxAttempt.__table__)
_EVENTS = cast(Table, TxEventRow.__table__)


class LockedState(NamedTuple):
    status: TxStatus
    final_hash: str | None
    block_hash: str | None


async def lock_states(
    session: AsyncSession, tx_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, LockedState]:
    """Lock these requests, in id order (the one lock order of every writer: no deadlocks
    between workers), and return what the writers compare against."""
    t = _TRANSACTIONS.c
    query = (
        select(t.id, t.status, t.final_hash, t.block_hash)
        .where(t.id.in_(in_list(list(dict.fromkeys(tx_ids)))))
        .order_by(t.id)
        .with_for_update()
    )
    rows = (await session.execute(query)).all()
    return {
        row.id: LockedState(TxStatus(row.status), row.final_hash, row.block_hash) for row in rows
    }


async def store_signed(
    session: AsyncSession,
    attempts: Sequence[dict[str, Any]],
    events: Sequence[dict[str, Any]],
    signed: Sequence[dict[str, Any]],
) -> None:
    """Write a signing round in three bulk statements: the attempt rows, the event rows, and
    each request's new status, nonce and gas limit (`signed`: id, status, nonce, gas_limit,
    updated_at)."""
    if not attempts:
        return
    await session.execute(insert(_ATTEMPTS), list(attempts))
    await session.execute(insert(_EVENTS), list(events))
    await session.execute(
        update(_TRANSACTIONS)
        .where(_TRANSACTIONS.c.id == bindparam("b_id"))
        .values(
            status=bindparam("b_status"),
            nonce=bindparam("b_nonce"),
            gas_limit=bindparam("b_gas_limit"),
            updated_at=bindparam("b_updated_at"),
        ),
        _bound(signed),
    )


@dataclass
class SendWrites:
    """What one batch of broadcasts changes: attempts a node accepted (id, at) or refused
    (id, at, sent: 0 or 1 more broadcast, error), requests that moved to submitted
    (id, status, at) and their event rows."""

    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    moved: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


async def store_sends(session: AsyncSession, writes: SendWrites) -> None:
    """Write a batch of broadcast answers in at most four bulk statements."""
    attempts = _ATTEMPTS.c
    if writes.accepted:
        await session.execute(
            update(_ATTEMPTS)
            .where(attempts.id == bindparam("b_id"))
            .values(
                last_sent_at=bindparam("b_at"),
                first_sent_at=func.coalesce(attempts.first_sent_at, bindparam("b_at")),
                broadcast_count=attempts.broadcast_count + literal(1),
                last_error=None,
                status=case(
                    (attempts.status == AttemptStatus.SIGNED.value, AttemptStatus.SUBMITTED.value),
                    else_=attempts.status,
                ),
            ),
            _bound(writes.accepted),
        )
    if writes.refused:
        await session.execute(
            update(_ATTEMPTS)
            .where(attempts.id == bindparam("b_id"))
            .values(
                last_sent_at=bindparam("b_at"),
                broadcast_count=attempts.broadcast_count + bindparam("b_sent"),
                last_error=bindparam("b_error"),
            ),
            _bound(writes.refused),
        )
    if writes.moved:
        await session.execute(insert(_EVENTS), writes.events)
        await session.execute(
            update(_TRANSACTIONS)
            .where(_TRANSACTIONS.c.id == bindparam("b_id"))
            .values(status=bindparam("b_status"), updated_at=bindparam("b_at")),
            _bound(writes.moved),
        )


@dataclass
class ReceiptWrites:
    """What one tracking round records: mined requests (their receipt columns, see
    confirming.py), their attempts (tx_id, mined: the attempt with the receipt), requests
    whose attempts only get the head stamped as their first-seen block, and event rows."""

    head: int
    requests: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    stamped: list[uuid.UUID] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


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


async def store_receipts(session: AsyncSession, writes: ReceiptWrites) -> None:
    """Write a tracking round's receipts in at most four bulk statements."""
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
            .where(attempts.tx_id.in_(in_list(writes.stamped)))
            .values(sent_at_block=stamp)
        )
    if not writes.requests:
        return
    await session.execute(
        update(_ATTEMPTS)
        .where(attempts.tx_id == bindparam("b_tx_id"))
        .values(
            sent_at_block=stamp,
            status=case(
                (attempts.id == bindparam("b_mined"), AttemptStatus.MINED.value),
                else_=AttemptStatus.REPLACED.value,
            ),
        ),
        _bound(writes.attempts),
    )
    t = _TRANSACTIONS.c
    values: dict[str, Any] = {name: bindparam(f"b_{name}") for name in _RECEIPT_COLUMNS}
    values["error_code"] = func.coalesce(bindparam("b_error_code"), t.error_code)
    values["error_message"] = func.coalesce(bindparam("b_error_message"), t.error_message)
    await session.execute(
        update(_TRANSACTIONS).where(t.id == bindparam("b_id")).values(**values),
        _bound(writes.requests),
    )
    if writes.events:
        await session.execute(insert(_EVENTS), writes.events)


def _bound(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    # Bind names must differ from the column names in an executemany UPDATE.
    return [{f"b_{key}": value for key, value in row.items()} for row in rows]
