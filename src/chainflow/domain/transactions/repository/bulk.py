"""Bulk Core statements of the worker's hot paths: a signing round, a batch of broadcast
answers, a tracking round's receipts. Each writes many rows in a few executemany statements
instead of an ORM flush per row (the ORM stays for the rare paths)."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import ColumnElement, Table, bindparam, case, func, insert, literal, update
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.types import TxId
from chainflow.domain.transactions import transitions
from chainflow.domain.transactions.models import AttemptStatus, Transaction, TxAttempt
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
from chainflow.infra.db.params import in_list

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
    """Write a signing round in three bulk statements."""
    if not writes.attempts:
        return
    await session.execute(insert(_ATTEMPTS), writes.attempts)
    await session.execute(
        update(_TRANSACTIONS)
        .where(_TRANSACTIONS.c.id == bindparam("b_id"))
        .values(
            status=bindparam("b_status"),
            nonce=bindparam("b_nonce"),
            gas_limit=bindparam("b_gas_limit"),
            updated_at=bindparam("b_updated_at"),
        ),
        _bound(writes.signed),
    )
    await transitions.log(session, writes.transitions)  # after: its snapshots read the rows


@dataclass
class SendWrites:
    """What one batch of broadcasts changes: attempts a node accepted or refused, and the
    requests that moved to submitted (their transitions)."""

    accepted: list[AcceptedUpdate] = field(default_factory=list)
    refused: list[RefusedUpdate] = field(default_factory=list)
    moved: list[SentUpdate] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)


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
        await session.execute(
            update(_TRANSACTIONS)
            .where(_TRANSACTIONS.c.id == bindparam("b_id"))
            .values(status=bindparam("b_status"), updated_at=bindparam("b_updated_at")),
            _bound(writes.moved),
        )
        await transitions.log(session, writes.transitions)  # after: its snapshots read the rows


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
    values: dict[str, ColumnElement[object]] = {
        name: bindparam(f"b_{name}") for name in _RECEIPT_COLUMNS
    }
    values["error_code"] = func.coalesce(bindparam("b_error_code"), t.error_code)
    values["error_message"] = func.coalesce(bindparam("b_error_message"), t.error_message)
    await session.execute(
        update(_TRANSACTIONS).where(t.id == bindparam("b_id")).values(**values),
        _bound(writes.requests),
    )
    await transitions.log(session, writes.transitions)


def _bound(rows: Sequence[Mapping[str, object]]) -> list[dict[str, object]]:
    # Bind names must differ from the column names in an executemany UPDATE.
    return [{f"b_{key}": value for key, value in row.items()} for row in rows]
