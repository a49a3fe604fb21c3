"""Use cases of transaction requests: submit (idempotent), read, list, cancel."""

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from chainflow.core.cursor import decode_cursor, encode_cursor
from chainflow.domain.chains import service as chains
from chainflow.domain.chains.errors import ChainNotFound, UnknownChain
from chainflow.domain.chains.models import Chain
from chainflow.domain.transactions import repository
from chainflow.domain.transactions.calldata import encode_call
from chainflow.domain.transactions.errors import (
    AlreadyFinal,
    ChainDisabled,
    FeeAboveCap,
    IdempotencyConflict,
    LaneDisabled,
    TxNotFound,
    UnknownWallet,
    WalletNotActive,
)
from chainflow.domain.transactions.lifecycle import apply, record_created
from chainflow.domain.transactions.models import Transaction
from chainflow.domain.transactions.schemas import TxCreate
from chainflow.domain.transactions.state import TxEvent, TxStatus, is_terminal
from chainflow.domain.wallets import service as wallets
from chainflow.domain.wallets.errors import WalletNotFound
from chainflow.domain.wallets.models import Wallet, WalletStatus


@dataclass(frozen=True)
class Submitted:
    tx: Transaction
    created: bool  # False when an earlier request with the same idempotency key was returned


def request_hash(body: TxCreate) -> str:
    """Fingerprint of a request body, to tell a retry from a different request."""
    return hashlib.sha256(body.model_dump_json(exclude_none=True).encode()).hexdigest()


async def submit(
    session: AsyncSession,
    body: TxCreate,
    *,
    api_key_id: uuid.UUID | None,
    idempotency_key: str | None,
) -> Submitted:
    """Store a queued request after checking chain, wallet, lane and caps.

    Raises:
        IdempotencyConflict: the key was used with a different body.
    """
    fingerprint = request_hash(body)
    if idempotency_key is not None:
        earlier = await repository.get_by_idempotency_key(session, api_key_id, idempotency_key)
        if earlier is not None:
            return _replay(earlier, fingerprint)
    chain, wallet = await _check_target(session, body)
    tx = _new_request(body, chain=chain, wallet=wallet, fingerprint=fingerprint)
    tx.api_key_id, tx.idempotency_key = api_key_id, idempotency_key
    if idempotency_key is None:
        session.add(tx)
        return await _created(session, tx)  # one flush writes the row and its event
    try:  # a savepoint, so that losing the race below leaves the session usable
        async with session.begin_nested():
            session.add(tx)
            await session.flush()
    except IntegrityError:
        # A concurrent request with the same key won the unique constraint.
        earlier = await repository.get_by_idempotency_key(session, api_key_id, idempotency_key)
        if earlier is None:
            raise
        return _replay(earlier, fingerprint)
    return await _created(session, tx)


async def _created(session: AsyncSession, tx: Transaction) -> Submitted:
    event = record_created(session, tx)
    await session.flush()
    # A new request has no attempts and one event: no need to read them back.
    set_committed_value(tx, "attempts", [])
    set_committed_value(tx, "events", [event])
    return Submitted(tx=tx, created=True)


def _replay(earlier: Transaction, fingerprint: str) -> Submitted:
    if earlier.request_hash != fingerprint:
        raise IdempotencyConflict(
            "this Idempotency-Key was already used with a different request body"
        )
    return Submitted(tx=earlier, created=False)


async def _check_target(session: AsyncSession, body: TxCreate) -> tuple[Chain, Wallet]:
    try:
        chain = await chains.get_chain(session, body.chain_id, endpoints=False)
    except ChainNotFound:
        raise UnknownChain(f"chain {body.chain_id} is not in the registry") from None
    if not chain.enabled:
        raise ChainDisabled(f"chain {chain.chain_id} is disabled")
    try:
        wallet, lane_enabled = await wallets.get_wallet_on_chain(
            session, body.wallet, chain.chain_id
        )
    except WalletNotFound:
        raise UnknownWallet(f"wallet {body.wallet} does not exist") from None
    if wallet.status is not WalletStatus.ACTIVE:
        raise WalletNotActive(f"wallet {wallet.address} is {wallet.status}")
    if not lane_enabled:
        raise LaneDisabled(f"wallet {wallet.address} is not enabled on chain {chain.chain_id}")
    _check_caps(body, chain)
    return chain, wallet


def _check_caps(body: TxCreate, chain: Chain) -> None:
    cap = chain.max_fee_per_gas_cap
    if cap is not None and body.max_fee_per_gas is not None and body.max_fee_per_gas > cap:
        raise FeeAboveCap(f"max_fee_per_gas is above chain {chain.chain_id}'s cap of {cap} wei")
    tip_cap = chain.max_priority_fee_per_gas_cap
    tip = body.max_priority_fee_per_gas
    if tip_cap is not None and tip is not None and tip > tip_cap:
        raise FeeAboveCap(f"max_priority_fee_per_gas is above the chain's cap of {tip_cap} wei")


def _new_request(body: TxCreate, *, chain: Chain, wallet: Wallet, fingerprint: str) -> Transaction:
    if body.function is not None:
        data = encode_call(body.function, body.args or [])
    else:
        data = bytes.fromhex((body.data or "0x")[2:])
    return Transaction(
        id=uuid.uuid4(),
        request_hash=fingerprint,
        chain_id=chain.chain_id,
        wallet_id=wallet.id,
        from_address=wallet.address,
        to_address=body.to,
        value_wei=body.value,
        data=data,
        gas_limit=body.gas_limit,
        max_fee_per_gas_cap=body.max_fee_per_gas,
        max_priority_fee_per_gas_cap=body.max_priority_fee_per_gas,
        valid_until=body.valid_until,
        status=TxStatus.QUEUED,
        cancel_requested=False,
        confirmations=0,
    )


async def get_transaction(session: AsyncSession, tx_id: uuid.UUID) -> Transaction:
    """One request with attempts and events. Raises: TxNotFound."""
    tx = await repository.get(session, tx_id, full=True)
    if tx is None:
        raise TxNotFound(f"transaction {tx_id} does not exist")
    return tx


async def list_transactions(
    session: AsyncSession,
    *,
    limit: int,
    cursor: str | None,
    status: TxStatus | None = None,
    wallet: str | None = None,
    chain_id: int | None = None,
) -> tuple[Sequence[Transaction], str | None]:
    """One page of requests in submission order, filtered, and the next cursor."""
    wallet_id = (await wallets.get_wallet(session, wallet)).id if wallet else None
    rows = await repository.list_page(
        session,
        limit=limit + 1,
        after=decode_cursor(cursor),
        status=status,
        wallet_id=wallet_id,
        chain_id=chain_id,
    )
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.created_at, last.id)


async def cancel(session: AsyncSession, tx_id: uuid.UUID) -> Transaction:
    """Cancel a queued request at once; ask the tracker to replace a signed or sent one.

    Raises:
        AlreadyFinal: the request is already in a terminal state.
    """
    tx = await repository.lock_tracked(session, tx_id)
    if tx is None:
        raise TxNotFound(f"transaction {tx_id} does not exist")
    if is_terminal(tx.status):
        raise AlreadyFinal(f"transaction {tx_id} is already {tx.status}")
    if tx.status is TxStatus.QUEUED:
        apply(session, tx, TxEvent.CANCELLED, reason="cancelled before signing")
    elif not tx.cancel_requested:
        tx.cancel_requested = True
    await session.flush()
    return await get_transaction(session, tx_id)
