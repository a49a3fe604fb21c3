"""The SQL of a new request: one read of chain, wallet and lane, then the inserts.

Submitting is the API's hot path, so it skips the ORM's unit of work: the row and its first
event are plain INSERTs whose values are all known here. On PostgreSQL they are one statement
(a data-modifying CTE), so a submission needs no transaction around them.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, cast

from eth_utils.address import is_address, to_checksum_address
from sqlalchemy import ColumnElement, Insert, Table, and_, bindparam, false, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.domain.chains.models import Chain
from chainflow.domain.transactions.models import Transaction, TxEventRow, TxKind
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets.models import Wallet, WalletChain, WalletStatus

_TRANSACTIONS = cast(Table, Transaction.__table__)
_EVENTS = cast(Table, TxEventRow.__table__)


@dataclass(frozen=True)
class Target:
    """What a submission is checked against; wallet fields are None for an unknown wallet."""

    chain_id: int
    chain_enabled: bool
    max_fee_per_gas_cap: int | None
    max_priority_fee_per_gas_cap: int | None
    wallet_id: uuid.UUID | None
    wallet_address: str | None
    wallet_status: WalletStatus | None
    lane_enabled: bool


@dataclass(frozen=True)
class NewRequest:
    """The column values of a queued request; its names are the table's columns."""

    id: uuid.UUID
    kind: TxKind
    api_key_id: uuid.UUID | None
    idempotency_key: str | None
    request_hash: str
    chain_id: int
    wallet_id: uuid.UUID
    from_address: str
    to_address: str
    value_wei: int
    data: bytes
    gas_limit: int | None
    max_fee_per_gas_cap: int | None
    max_priority_fee_per_gas_cap: int | None
    valid_until: datetime | None
    status: TxStatus
    cancel_requested: bool
    confirmations: int
    created_at: datetime
    updated_at: datetime


_COLUMNS = tuple(field.name for field in fields(NewRequest))


def _wallet_match(ref: str) -> ColumnElement[bool]:
    if is_address(ref):
        return Wallet.address == str(to_checksum_address(ref))
    try:
        return Wallet.id == uuid.UUID(ref)
    except ValueError:
        return false()


async def find_target(session: AsyncSession, chain_id: int, wallet_ref: str) -> Target | None:
    """The chain, the wallet (by id or address) and its lane there, in one query; None when
    the chain is not in the registry."""
    query = (
        select(
            Chain.chain_id,
            Chain.enabled,
            Chain.max_fee_per_gas_cap,
            Chain.max_priority_fee_per_gas_cap,
            Wallet.id,
            Wallet.address,
            Wallet.status,
            WalletChain.enabled,
        )
        .select_from(Chain)
        .outerjoin(Wallet, _wallet_match(wallet_ref))
        .outerjoin(
            WalletChain,
            and_(WalletChain.wallet_id == Wallet.id, WalletChain.chain_id == Chain.chain_id),
        )
        .where(Chain.chain_id == chain_id)
    )
    row = (await session.execute(query)).one_or_none()
    if row is None:
        return None
    return Target(
        chain_id=row[0],
        chain_enabled=row[1],
        max_fee_per_gas_cap=row[2],
        max_priority_fee_per_gas_cap=row[3],
        wallet_id=row[4],
        wallet_address=row[5],
        wallet_status=row[6],
        lane_enabled=bool(row[7]),
    )


# A request whose idempotency key is taken inserts nothing (ON CONFLICT DO NOTHING) rather
# than raising: the caller then reads the earlier request, with no savepoint to roll back to.
_NEW_TX = (
    postgresql.insert(_TRANSACTIONS)
    .values({name: bindparam(name) for name in _COLUMNS})
    .on_conflict_do_nothing()
    .returning(_TRANSACTIONS.c.id, _TRANSACTIONS.c.status, _TRANSACTIONS.c.created_at)
    .cte("new_tx")
)
_PG_INSERT: Insert = (
    insert(_EVENTS)
    .from_select(
        ["tx_id", "to_status", "at"],
        select(_NEW_TX.c.id, _NEW_TX.c.status, _NEW_TX.c.created_at),
    )
    .returning(_EVENTS.c.tx_id)
)
_SQLITE_INSERT = sqlite.insert(_TRANSACTIONS).on_conflict_do_nothing().returning(_TRANSACTIONS.c.id)


async def insert_request(session: AsyncSession, request: NewRequest) -> bool:
    """Store the request and its `created` event; False, storing nothing, when its idempotency
    key is already taken. One statement on PostgreSQL (atomic without a transaction)."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        result = await session.execute(_PG_INSERT, _columns(request))
        return result.first() is not None
    if (await session.execute(_SQLITE_INSERT, _columns(request))).first() is None:
        return False
    await session.execute(insert(_EVENTS), _created_event(request))
    return True


async def insert_requests(session: AsyncSession, requests: Sequence[NewRequest]) -> None:
    """insert_request for many, two statements in all."""
    await session.execute(insert(_TRANSACTIONS), [_columns(request) for request in requests])
    await session.execute(insert(_EVENTS), [_created_event(request) for request in requests])


def _columns(request: NewRequest) -> dict[str, Any]:
    # Not dataclasses.asdict: it deep-copies every value (4% of the API's CPU per submit).
    return {name: getattr(request, name) for name in _COLUMNS}


def _created_event(request: NewRequest) -> dict[str, Any]:
    # No `detail`: given as None, the JSON column would store the JSON text 'null'.
    return {"tx_id": request.id, "to_status": request.status.value, "at": request.created_at}
