"""The state of the requests a bulk round changed, read back in its own DB transaction for
their event snapshots (snapshots.py): two SELECTs per round, whatever its size."""

from collections.abc import Collection
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
_REQUEST_COLUMNS = [
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
_ATTEMPT_COLUMNS = [
    _ATTEMPTS.c[name]
    for name in (
        "tx_id",
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


async def load_states(session: AsyncSession, tx_ids: Collection[TxId]) -> States:
    """Each request of `tx_ids` as this DB transaction sees it, with its attempts in creation
    order."""
    ids = in_list(tx_ids)
    requests = await session.execute(select(*_REQUEST_COLUMNS).where(_TRANSACTIONS.c.id.in_(ids)))
    states: States = {row.id: (row, []) for row in requests}
    attempts = await session.execute(
        select(*_ATTEMPT_COLUMNS)
        .where(_ATTEMPTS.c.tx_id.in_(ids))
        .order_by(_ATTEMPTS.c.created_at, _ATTEMPTS.c.id)
    )
    for attempt in attempts:
        states[attempt.tx_id][1].append(attempt)
    return states
