"""Submit many transaction requests at once, all or none (`POST /v1/transactions/batch`):
each item checked as `service.submit` checks one, the items of one wallet and chain adding up
against its spending policy."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.errors import ChainflowError
from chainflow.core.restrictions import UNRESTRICTED, Restrictions
from chainflow.domain.transactions import admission, idempotency, repository, service, spending
from chainflow.domain.transactions.calldata import calldata_of
from chainflow.domain.transactions.errors import IdempotencyConflict
from chainflow.domain.transactions.models import Transaction
from chainflow.domain.transactions.repository import intake
from chainflow.domain.transactions.rows import NewRequest
from chainflow.domain.transactions.schemas import TxCreate

MAX_BATCH = 500


@dataclass(frozen=True)
class BatchCreated:
    """New requests, stored now, in the order given."""

    requests: list[NewRequest]


@dataclass(frozen=True)
class BatchReplayed:
    """The batch stored earlier under the same idempotency key and items."""

    earlier: list[Transaction]


BatchSubmitted: TypeAlias = BatchCreated | BatchReplayed


async def submit_batch(
    session: AsyncSession,
    bodies: Sequence[TxCreate],
    *,
    api_key_id: uuid.UUID | None,
    idempotency_key: str | None,
    restrictions: Restrictions = UNRESTRICTED,
) -> BatchSubmitted:
    """Store many queued requests at once, all or none: the first item that fails a check
    (the key's restrictions and the wallets' policies included, the items of one wallet and
    chain adding up against its limits) fails the batch (its error says which), and nothing
    is stored.

    With an Idempotency-Key, item i is stored under `<key>#<i>` (idempotency.py); the same
    key and items return the earlier batch. Raises: IdempotencyConflict, InvalidIdempotencyKey.
    """
    fingerprints = [service.request_hash(body) for body in bodies]
    keys = idempotency.batch_keys(idempotency_key, len(bodies))  # one more than items
    if keys is not None:
        earlier = await _earlier_batch(session, api_key_id, keys, fingerprints)
        if earlier is not None:
            return BatchReplayed(earlier)
    requests = await _batch_requests(
        session,
        bodies,
        fingerprints=fingerprints,
        keys=keys,
        api_key_id=api_key_id,
        restrictions=restrictions,
    )
    if keys is None:
        await intake.insert_requests(session, requests)
        intake.count_created(requests)
        return BatchCreated(requests)
    try:  # a savepoint, so that losing the race below leaves the session usable
        async with session.begin_nested():
            await intake.insert_requests(session, requests)
    except IntegrityError:
        earlier = await _earlier_batch(session, api_key_id, keys, fingerprints)
        if earlier is None:
            raise
        return BatchReplayed(earlier)
    intake.count_created(requests)
    return BatchCreated(requests)


async def _batch_requests(
    session: AsyncSession,
    bodies: Sequence[TxCreate],
    *,
    fingerprints: list[str],
    keys: list[str] | None,
    api_key_id: uuid.UUID | None,
    restrictions: Restrictions,
) -> list[NewRequest]:
    targets: dict[tuple[int, str], intake.Target | None] = {}
    for body in bodies:  # read once per chain and wallet; checked below for every item
        pair = (body.chain_id, body.wallet)
        if pair not in targets:
            targets[pair] = await intake.find_target(session, body.chain_id, body.wallet)
    requests: list[NewRequest] = []
    calldata = await calldata_of(bodies)
    ledger = spending.Ledger(session, lock=True)
    policed = {t.wallet_id for t in targets.values() if t is not None and t.has_policy}
    await ledger.lock_first(wallet for wallet in policed if wallet is not None)
    for index, body in enumerate(bodies):
        try:
            restrictions.check_chain(body.chain_id)
            target = targets[(body.chain_id, body.wallet)]
            restrictions.check_wallet(target.wallet_id if target is not None else None)
            checked = admission.checked_target(target, body)
            fee_cap = body.max_fee_per_gas
            if target is not None and target.has_policy:
                draft = spending.draft_of(body, target, calldata[index])
                fee_cap = await ledger.admit(checked.wallet_id, draft)
            requests.append(
                admission.new_request(
                    body,
                    checked,
                    data=calldata[index],
                    fingerprint=fingerprints[index],
                    api_key_id=api_key_id,
                    idempotency_key=keys[index] if keys is not None else None,
                    fee_cap=fee_cap,
                )
            )
        except ChainflowError as exc:
            raise type(exc)(
                f"transactions[{index}]: {exc.detail}", index=index, **exc.extra
            ) from None
    return requests


async def _earlier_batch(
    session: AsyncSession,
    api_key_id: uuid.UUID | None,
    keys: list[str],
    fingerprints: list[str],
) -> list[Transaction] | None:
    """The batch stored under these keys, None if there is none; a batch that differs in
    any item (or in length) is a conflict. The last key is one past the end: a longer
    earlier batch is a different batch."""
    found = await repository.get_by_idempotency_keys(session, api_key_id, keys)
    if not found:
        return None
    *items, beyond = keys
    earlier = [found.get(key) for key in items]
    same = all(
        tx is not None and tx.request_hash == fingerprint
        for tx, fingerprint in zip(earlier, fingerprints, strict=True)
    )
    if not same or beyond in found:
        raise IdempotencyConflict(
            "this Idempotency-Key was already used with a different batch of requests"
        )
    return [tx for tx in earlier if tx is not None]
