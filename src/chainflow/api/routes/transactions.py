"""Routes of transaction requests."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status
from pydantic import BaseModel

from chainflow.api.deps import ReadKey, ResourcesDep, SessionmakerDep, TxWriteKey
from chainflow.api.responses import problem_responses
from chainflow.core.fields import ChainId
from chainflow.domain.apikeys import service as apikeys
from chainflow.domain.transactions import idempotency, service
from chainflow.domain.transactions.models import Transaction, TxAttempt
from chainflow.domain.transactions.rows import NewRequest
from chainflow.domain.transactions.schemas import (
    AttemptRead,
    ErrorRead,
    EventRead,
    ReceiptRead,
    TxBatchCreate,
    TxBatchRead,
    TxCreate,
    TxList,
    TxRead,
    TxSummary,
)
from chainflow.domain.transactions.state import TxStatus
from chainflow.infra.db.uow import single_statements, unit_of_work

router = APIRouter(prefix="/v1/transactions", tags=["transactions"])
# Checked by the service (idempotency.py), which refuses a bad key with its own code.
IdempotencyKey = Annotated[
    str | None, Header(description=f"{idempotency.RULE}; single and batch keys never collide")
]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TxRead,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def submit_transaction(
    body: TxCreate,
    resources: ResourcesDep,
    key: TxWriteKey,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Queue a request. The same Idempotency-Key and body return the same transaction."""
    async with single_statements(resources.engine) as db:
        result = await service.submit(db, body, api_key_id=key.id, idempotency_key=idempotency_key)
    if result.earlier is not None:
        async with unit_of_work(resources.sessionmaker) as session:
            earlier = await service.get_transaction(session, result.earlier.id)
        return _accepted(render(earlier), replayed=True)
    assert result.created is not None  # noqa: S101 - one of the two is set
    await resources.doorbells.ring(result.created.chain_id, result.created.wallet_id)
    return _accepted(render_new(result.created), replayed=False)


@router.post(
    "/batch",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TxBatchRead,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def submit_batch(
    body: TxBatchCreate,
    resources: ResourcesDep,
    key: TxWriteKey,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Queue up to 500 requests in one call, all or none: an item that fails a check fails
    the batch (the problem's `index` says which) and nothing is stored. With an
    Idempotency-Key, the same key and items return the same transactions."""
    async with unit_of_work(resources.sessionmaker) as session:
        result = await service.submit_batch(
            session, body.transactions, api_key_id=key.id, idempotency_key=idempotency_key
        )
    if result.created is None:
        earlier = result.earlier or []
        return _accepted(TxBatchRead(items=[render(tx) for tx in earlier]), replayed=True)
    for chain_id, wallet_id in dict.fromkeys((r.chain_id, r.wallet_id) for r in result.created):
        await resources.doorbells.ring(chain_id, wallet_id)
    return _accepted(TxBatchRead(items=[render_new(r) for r in result.created]), replayed=False)


def _accepted(view: BaseModel, *, replayed: bool) -> Response:
    """202 with the view sent as is (FastAPI would validate a returned model a second time)."""
    return Response(
        view.model_dump_json(by_alias=True),
        status_code=status.HTTP_202_ACCEPTED,
        media_type="application/json",
        headers={"Idempotent-Replayed": "true"} if replayed else None,
    )


@router.get("/{tx_id}", responses=problem_responses(401, 403, 404))
async def get_transaction(tx_id: uuid.UUID, sessionmaker: SessionmakerDep, _key: ReadKey) -> TxRead:
    """One transaction with its attempts, receipt and event log."""
    async with unit_of_work(sessionmaker) as session:
        return render(await service.get_transaction(session, tx_id))


@router.get("", responses=problem_responses(401, 403, 404, 422))
async def list_transactions(
    sessionmaker: SessionmakerDep,
    _key: ReadKey,
    status_: Annotated[TxStatus | None, Query(alias="status")] = None,
    wallet: Annotated[str | None, Query(max_length=64)] = None,
    chain_id: Annotated[ChainId | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> TxList:
    """List transactions in submission order, filtered by status, wallet and chain."""
    async with unit_of_work(sessionmaker) as session:
        rows, next_cursor = await service.list_transactions(
            session, limit=limit, cursor=cursor, status=status_, wallet=wallet, chain_id=chain_id
        )
        items = [
            TxSummary(
                id=tx.id,
                chain_id=tx.chain_id,
                wallet_id=tx.wallet_id,
                to=tx.to_address,
                value=tx.value_wei,
                status=tx.status,
                nonce=tx.nonce,
                hash=tx.final_hash,
                created_at=tx.created_at,
            )
            for tx in rows
        ]
        return TxList(items=items, next_cursor=next_cursor)


@router.post("/{tx_id}/cancel", responses=problem_responses(401, 403, 404, 409))
async def cancel_transaction(
    tx_id: uuid.UUID, sessionmaker: SessionmakerDep, key: TxWriteKey
) -> TxRead:
    """Queued: cancelled at once. Signed or sent: a 0-value self-transfer at the same nonce
    competes with it; the final status says which won (`cancelled` or the request's own).
    Only the key that submitted the request, or an admin key, may cancel it (else 403)."""
    async with unit_of_work(sessionmaker) as session:
        cancelled = await service.cancel(
            session, tx_id, api_key_id=key.id, is_admin=apikeys.is_admin(key)
        )
        return render(cancelled)


def render(tx: Transaction) -> TxRead:
    """The API view of a transaction with attempts and events loaded."""
    receipt = None
    if tx.block_number is not None and tx.block_hash is not None:
        receipt = ReceiptRead(
            block_number=tx.block_number,
            block_hash=tx.block_hash,
            gas_used=tx.gas_used,
            effective_gas_price=tx.effective_gas_price_wei,
            status=tx.receipt_status or 0,
        )
    error = ErrorRead(code=tx.error_code, message=tx.error_message or "") if tx.error_code else None
    return TxRead.model_validate(
        {
            "id": tx.id,
            "chain_id": tx.chain_id,
            "wallet_id": tx.wallet_id,
            "from": tx.from_address,
            "to": tx.to_address,
            "value": tx.value_wei,
            "data": "0x" + tx.data.hex(),
            "status": tx.status,
            "nonce": tx.nonce,
            "hash": tx.final_hash or _latest_hash(tx),
            "cancel_requested": tx.cancel_requested,
            "attempts": [_attempt(a) for a in tx.attempts],
            "receipt": receipt,
            "confirmations": tx.confirmations,
            "error": error,
            "events": [
                EventRead(
                    from_status=e.from_status, to_status=e.to_status, at=e.at, detail=e.detail
                )
                for e in tx.events
            ],
            "valid_until": tx.valid_until,
            "created_at": tx.created_at,
            "updated_at": tx.updated_at,
        }
    )


def render_new(request: NewRequest) -> TxRead:
    """The API view of a request just queued: no attempts, one `queued` event."""
    return TxRead(
        id=request.id,
        chain_id=request.chain_id,
        wallet_id=request.wallet_id,
        from_=request.from_address,
        to=request.to_address,
        value=request.value_wei,
        data="0x" + request.data.hex(),
        status=request.status,
        nonce=None,
        hash=None,
        cancel_requested=False,
        attempts=[],
        receipt=None,
        confirmations=0,
        error=None,
        events=[
            EventRead(
                from_status=None,
                to_status=request.status.value,
                at=request.created_at,
                detail=None,
            )
        ],
        valid_until=request.valid_until,
        created_at=request.created_at,
        updated_at=request.updated_at,
    )


def _latest_hash(tx: Transaction) -> str | None:
    return tx.attempts[-1].hash if tx.attempts else None


def _attempt(a: TxAttempt) -> AttemptRead:
    return AttemptRead(
        hash=a.hash,
        kind=a.kind.value,
        status=a.status.value,
        nonce=a.nonce,
        gas_limit=a.gas_limit,
        max_fee_per_gas=a.max_fee_per_gas_wei,
        max_priority_fee_per_gas=a.max_priority_fee_per_gas_wei,
        gas_price=a.gas_price_wei,
        broadcast_count=a.broadcast_count,
        first_sent_at=a.first_sent_at,
        last_sent_at=a.last_sent_at,
    )
