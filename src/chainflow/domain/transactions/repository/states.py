"""The state of the requests a bulk round changed, for their event snapshots (snapshots.py):
returned by the round's own UPDATEs where it can (`REQUEST_COLUMNS`, `ATTEMPT_COLUMNS` as
their RETURNING), else read back in the round's DB transaction: one SELECT per kind of row
not returned, whatever the round's size."""

from collections.abc import Collection, Sequence
from typing import Any, cast

from sqlalchemy import Row, Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.types import TxId
from chainflow.domain.transactions.models import Transaction, TxAttempt
from chainflow.infra.db.params import in_list

_TRANSACTIONS = cast(Table, Transaction.__table__)
_ATTEMPTS = cast(Table, TxAttempt.__table__)
# Every column a snapshot shows; not the calldata's neighbours it does not (raw bytes of the
# attempts, idempotency keys).
REQUEST_COLUMNS = [
    _TRANSACTIONS.c[name]
    for name in (
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
]
ATTEMPT_COLUMNS = [
    _ATTEMPTS.c[name]
    for name in (
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
]

States = dict[TxId, tuple[Row[Any], list[Row[Any]]]]


async def load_states(
    session: AsyncSession,
    tx_ids: Collection[TxId],
    *,
    requests: Sequence[Row[Any]] | None = None,
    attempts: Sequence[Row[Any]] | None = None,
) -> States:
    """Each request of `tx_ids` as this DB transaction sees it, with its attempts in creation
    order. `requests` (rows of REQUEST_COLUMNS) and `attempts` (rows of ATTEMPT_COLUMNS, every
    attempt of each request) are what the caller's UPDATEs returned, as of its last write of
    those rows in this DB transaction; whichever is None is read."""
    ids = in_list(tx_ids)
    if requests is None:
        requests = (
            await session.execute(select(*REQUEST_COLUMNS).where(_TRANSACTIONS.c.id.in_(ids)))
        ).all()
    wanted = set(tx_ids)
    states: States = {row.id: (row, []) for row in requests if row.id in wanted}
    if attempts is None:
        attempts = (
            await session.execute(
                select(*ATTEMPT_COLUMNS)
                .where(_ATTEMPTS.c.tx_id.in_(ids))
                .order_by(_ATTEMPTS.c.created_at, _ATTEMPTS.c.id)
            )
        ).all()
    else:  # RETURNING has no order
        attempts = sorted(attempts, key=lambda a: (a.created_at, a.id))
    for attempt in attempts:
        state = states.get(attempt.tx_id)
        if state is not None:
            state[1].append(attempt)
    return states
