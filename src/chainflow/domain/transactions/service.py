"""Use cases of transaction requests: submit (idempotent), read, list, cancel (batch.py:
submit many at once)."""

import hashlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeAlias, cast, overload

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from chainflow.core.cursor import decode_cursor, encode_cursor
from chainflow.core.errors import ChainflowError
from chainflow.core.restrictions import UNRESTRICTED, Restrictions
from chainflow.core.types import TxId
from chainflow.domain.transactions import admission, idempotency, repository, spending
from chainflow.domain.transactions.calldata import calldata_of
from chainflow.domain.transactions.errors import (
    AlreadyFinal,
    IdempotencyConflict,
    NotTransactionOwner,
    TxNotFound,
)
from chainflow.domain.transactions.models import Transaction
from chainflow.domain.transactions.repository import TxFilters, intake
from chainflow.domain.transactions.rows import NewRequest
from chainflow.domain.transactions.schemas import TxCreate
from chainflow.domain.transactions.state import TxEvent, TxStatus, is_terminal
from chainflow.domain.transactions.targets import TargetCache
from chainflow.domain.transactions.transitions import apply
from chainflow.domain.wallets import service as wallets


@dataclass(frozen=True)
class Created:
    """A new request, stored now."""

    request: NewRequest

    @property
    def tx_id(self) -> TxId:
        return self.request.id


@dataclass(frozen=True)
class Replayed:
    """The request stored earlier under the same idempotency key and body."""

    earlier: intake.Earlier

    @property
    def tx_id(self) -> TxId:
        return self.earlier.id


@dataclass(frozen=True)
class NeedsTransaction:
    """The wallet has a spending policy, and `db` was a connection in autocommit: submit
    again in a DB transaction, which can hold the policy's lock (spending.py). Nothing was
    stored."""


Submitted: TypeAlias = Created | Replayed | NeedsTransaction
# Stores a request with others (True), or finds its idempotency key taken (False), or stores
# nothing (None): api/group_commit.py.
GroupInsert: TypeAlias = Callable[[NewRequest], Awaitable[bool | None]]


def request_hash(body: TxCreate) -> str:
    """Fingerprint of a request body, to tell a retry from a different request."""
    return hashlib.sha256(body.model_dump_json(exclude_none=True).encode()).hexdigest()


@overload
async def submit(
    db: AsyncSession,
    body: TxCreate,
    *,
    api_key_id: uuid.UUID | None,
    idempotency_key: str | None,
    restrictions: Restrictions = ...,
    ledger: spending.Ledger | None = ...,
) -> Created | Replayed: ...


@overload
async def submit(
    db: AsyncConnection,
    body: TxCreate,
    *,
    api_key_id: uuid.UUID | None,
    idempotency_key: str | None,
    restrictions: Restrictions = ...,
    group: GroupInsert | None = ...,
    targets: TargetCache | None = ...,
) -> Submitted: ...


async def submit(
    db: intake.Executor,
    body: TxCreate,
    *,
    api_key_id: uuid.UUID | None,
    idempotency_key: str | None,
    restrictions: Restrictions = UNRESTRICTED,
    group: GroupInsert | None = None,
    targets: TargetCache | None = None,
    ledger: spending.Ledger | None = None,
) -> Submitted:
    """Store a queued request after checking the key's restrictions, chain, wallet, lane,
    caps and the wallet's spending policy. Without a policy every write is one statement, so
    `db` may be a connection in autocommit (`single_statements`); a wallet with a policy then
    answers NeedsTransaction.

    Raises:
        IdempotencyConflict: the key was used with a different body.
        InvalidIdempotencyKey: the key is empty, too long or has a character outside its set.
        KeyRestricted: the wallet or chain is outside the key's restrictions.
        PolicyDenied: a rule of the wallet's policy refuses it; nothing is stored.

    `group` (a connection in autocommit only): stores the request with others arriving at the
    same time, in one statement (api/group_commit.py); it answers as insert_request does, or
    None when it stored nothing, and the request is then stored here on its own. `targets`
    (with `group` only): chain/wallet/lane reads remembered for the next requests, which the
    group's statement checks again (targets.py). `ledger` (a session only): the policies
    locked by the caller for the whole of its DB transaction (a schedule pass), which this
    admission counts against instead of locking a policy of its own.
    """
    idempotency_key = idempotency.single_key(idempotency_key)
    fingerprint = request_hash(body)
    if idempotency_key is not None:
        earlier = await intake.find_earlier(db, api_key_id, idempotency_key)
        if earlier is not None:
            return _replay(earlier, fingerprint)
    restrictions.check_chain(body.chain_id)
    grouped = group is not None and not intake.is_transactional(db)
    target, checked = await _admit(db, body, restrictions, targets if grouped else None)
    (data,) = await calldata_of([body])
    fee_cap = body.max_fee_per_gas
    if target.has_policy:
        if not intake.is_transactional(db):
            return NeedsTransaction()
        draft = spending.draft_of(body, target, data)
        ledger = ledger or spending.Ledger(db, lock=True)
        fee_cap = await ledger.admit(checked.wallet_id, draft)
    request = admission.new_request(
        body,
        checked,
        data=data,
        fingerprint=fingerprint,
        api_key_id=api_key_id,
        idempotency_key=idempotency_key,
        fee_cap=fee_cap,
    )
    stored = await _store(db, request, group)
    if stored:
        return Created(request)
    if stored is False:  # its key was taken, or (grouped) the group's statement refused it
        replayed = await _key_taken(db, api_key_id, idempotency_key, fingerprint, grouped=grouped)
        if replayed is not None:
            return replayed
    # Grouped, and not stored: the group's statement found that its chain, wallet or lane no
    # longer admits it (paused, disabled, a cap lowered, a policy set since the target was
    # read or remembered), or it failed (None) — and only the group's statement checks a
    # remembered target again. Check it again on its own, against a fresh read, and store or
    # refuse it exactly as without groups.
    if targets is not None:
        targets.forget(body.chain_id, body.wallet)
    return await submit(
        db,
        body,
        api_key_id=api_key_id,
        idempotency_key=idempotency_key,
        restrictions=restrictions,
    )


async def _key_taken(
    db: intake.Executor,
    api_key_id: uuid.UUID | None,
    idempotency_key: str | None,
    fingerprint: str,
    *,
    grouped: bool,
) -> Submitted | None:
    """The answer to a request whose insert stored nothing: the replay of a concurrent request
    that stored the same key first; None when it was a group's refusal (checked again alone).
    Raises: IdempotencyConflict; ChainflowError when nothing explains it."""
    earlier = None
    if idempotency_key is not None:
        earlier = await intake.find_earlier(db, api_key_id, idempotency_key)
    if earlier is not None:
        return _replay(earlier, fingerprint)
    if not grouped:
        raise ChainflowError("the request conflicted with a stored one that holds no such key")
    return None


async def _admit(
    db: intake.Executor, body: TxCreate, restrictions: Restrictions, targets: TargetCache | None
) -> tuple[intake.Target, admission.Checked]:
    """The target the request is checked against, and what the checks keep of it: the one
    remembered in `targets` if it admits the request, else a fresh read (remembered when it
    admits a request without a spending policy). A remembered target that refuses is read
    again: it may be stale (a cap raised since), and the refusal must be the database's."""
    if targets is not None:
        remembered = targets.get(body.chain_id, body.wallet)
        if remembered is not None:
            try:
                return _check_target(remembered, body, restrictions)
            except ChainflowError:
                targets.forget(body.chain_id, body.wallet)
    target, checked = _check_target(
        await intake.find_target(db, body.chain_id, body.wallet), body, restrictions
    )
    if targets is not None and not target.has_policy:
        targets.put(body.chain_id, body.wallet, target)
    return target, checked


def _check_target(
    target: intake.Target | None, body: TxCreate, restrictions: Restrictions
) -> tuple[intake.Target, admission.Checked]:
    restrictions.check_wallet(target.wallet_id if target is not None else None)
    checked = admission.checked_target(
        target, body
    )  # refuses an unknown chain: `target` is not None below
    return cast(intake.Target, target), checked


async def _store(
    db: intake.Executor, request: NewRequest, group: GroupInsert | None
) -> bool | None:
    """Store the request, with a group when one is given and `db` is in autocommit; False when
    its idempotency key was taken, None when the group's statement failed without storing it
    (the caller submits it again on its own)."""
    if group is None or intake.is_transactional(db):
        return await intake.insert_request(db, request)
    stored = await group(request)
    if stored is not None:
        return stored
    # The group's statement may have committed and lost its answer (a dropped connection):
    # the request is then stored once, under its own id, and found here, not stored again.
    return True if await intake.is_stored(db, request.id) else None


def _replay(earlier: intake.Earlier, fingerprint: str) -> Submitted:
    if earlier.request_hash != fingerprint:
        raise IdempotencyConflict(
            "this Idempotency-Key was already used with a different request body"
        )
    return Replayed(earlier)


async def count_in_flight(session: AsyncSession, wallet_id: uuid.UUID, chain_id: int) -> int:
    """Requests of one lane (wallet, chain) signed or sent and not yet seen mined."""
    return await repository.count_in_flight(session, wallet_id, chain_id)


async def get_transaction(
    session: AsyncSession, tx_id: uuid.UUID, *, full: bool = True
) -> Transaction:
    """One request (`full`: with attempts and events). Raises: TxNotFound."""
    tx = await repository.get(session, tx_id, full=full)
    if tx is None:
        raise TxNotFound(f"transaction {tx_id} does not exist")
    return tx


async def list_transactions(
    session: AsyncSession,
    *,
    limit: int,
    cursor: str | None,
    filters: TxFilters,
    wallet: str | None = None,
    restrictions: Restrictions = UNRESTRICTED,
) -> tuple[Sequence[Transaction], str | None]:
    """One page of requests in submission order (or newest first), filtered (`wallet`: an
    id or address), and the next cursor; a restricted key sees only its wallets' and
    chains' requests."""
    if filters.chain_id is not None:
        restrictions.check_chain(filters.chain_id)
    if wallet:
        found = await wallets.get_visible_wallet(session, wallet, restrictions=restrictions)
        filters = replace(filters, wallet_id=found.id)
    filters = replace(filters, wallet_ids=restrictions.wallet_ids, chain_ids=restrictions.chain_ids)
    rows = await repository.list_page(
        session, limit=limit + 1, after=decode_cursor(cursor), filters=filters
    )
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.created_at, last.id)


async def cancel(
    session: AsyncSession,
    tx_id: uuid.UUID,
    *,
    api_key_id: uuid.UUID | None,
    is_admin: bool,
    restrictions: Restrictions = UNRESTRICTED,
) -> Transaction:
    """Cancel a queued request at once; ask the tracker to replace a signed or sent one.
    Only the API key that submitted it (`api_key_id`), or an admin key, may cancel it.

    Raises:
        NotTransactionOwner: another key's request (it stays readable by every key).
        AlreadyFinal: the request is already in a terminal state.
    """
    tx = await repository.lock_tracked(session, tx_id)
    if tx is None:
        raise TxNotFound(f"transaction {tx_id} does not exist")
    restrictions.check_reach(tx.wallet_id, tx.chain_id)
    if not is_admin and (tx.api_key_id is None or tx.api_key_id != api_key_id):
        raise NotTransactionOwner(
            f"transaction {tx_id} was submitted by another API key: only that key or an "
            "admin key can cancel it"
        )
    if is_terminal(tx.status):
        raise AlreadyFinal(f"transaction {tx_id} is already {tx.status}")
    if tx.status is TxStatus.QUEUED:
        apply(session, tx, TxEvent.CANCELLED, reason="cancelled before signing")
    elif not tx.cancel_requested:
        tx.cancel_requested = True
    await session.flush()
    return await get_transaction(session, tx_id)
