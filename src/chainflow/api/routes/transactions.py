"""Routes of transaction requests."""

import uuid
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Header, Query, Request, Response, status
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from chainflow.api import auth, ratelimit
from chainflow.api.deps import ReadKey, ResourcesDep, SessionmakerDep, TxWriteKey
from chainflow.api.resources import Resources
from chainflow.api.responses import problem_responses
from chainflow.core.clock import utcnow
from chainflow.core.fields import ChainId
from chainflow.domain.apikeys import service as apikeys
from chainflow.domain.apikeys.restrictions import restrictions_of
from chainflow.domain.apikeys.service import Scope
from chainflow.domain.transactions import batch, idempotency, lane_stats, service
from chainflow.domain.transactions.repository import TxFilters
from chainflow.domain.transactions.schemas import (
    TxBatchCreate,
    TxBatchRead,
    TxCreate,
    TxList,
    TxRead,
    TxSummary,
    queued_json,
)
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.webhooks import service as webhooks
from chainflow.domain.webhooks.schemas import DeliveryList
from chainflow.infra.db.uow import single_statements, unit_of_work

router = APIRouter(prefix="/v1/transactions", tags=["transactions"])
# Checked by the service (idempotency.py), which refuses a bad key with its own code.
IdempotencyKey = Annotated[
    str | None, Header(description=f"{idempotency.RULE}; single and batch keys never collide")
]


async def submit_transaction(
    body: TxCreate,
    resources: ResourcesDep,
    key: TxWriteKey,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Queue a request. The same Idempotency-Key and body return the same transaction.
    A request the wallet's spending policy refuses is `403 policy_denied`, naming the `rule`
    and its `limit`, and stores nothing (the Idempotency-Key stays unused)."""
    restrictions = restrictions_of(key)
    group = resources.group_commit
    async with single_statements(resources.engine) as db:
        result = await service.submit(
            db,
            body,
            api_key_id=key.id,
            idempotency_key=idempotency_key,
            restrictions=restrictions,
            group=group.insert if group is not None else None,
            targets=group.targets if group is not None else None,
        )
    if isinstance(result, service.NeedsTransaction):  # the wallet has a spending policy
        async with unit_of_work(resources.sessionmaker) as session:
            result = await service.submit(
                session,
                body,
                api_key_id=key.id,
                idempotency_key=idempotency_key,
                restrictions=restrictions,
            )
    if isinstance(result, service.Replayed):
        async with unit_of_work(resources.sessionmaker) as session:
            earlier = await service.get_transaction(session, result.earlier.id)
        return _accepted(TxRead.of(earlier), replayed=True)
    await resources.doorbells.ring(result.request.chain_id, result.request.wallet_id)
    return _answered(queued_json(result.request), replayed=False)


class _SubmitRoute(APIRoute):
    """POST /v1/transactions, the hot path (issue 17): a JSON body whose key the edge has
    already authenticated (gate.py) is validated and submitted here, without FastAPI's
    dependency solving (13% of the API's CPU per submission, docs/performance.md). Anything
    else (another content type, a body that does not parse or validate, no key at the edge)
    goes to FastAPI's own handler, which answers it as it always did: the route, its
    OpenAPI description and its errors are FastAPI's."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        fastapi_handler = super().get_route_handler()

        async def handler(request: Request) -> Response:
            key = auth.remembered(request.scope)
            if key is None or request.headers.get("content-type") != "application/json":
                return await fastapi_handler(request)
            # The order of FastAPI's: the key's scope (and rate, counted at the edge), then
            # the body.
            apikeys.require_scope(key, Scope.TRANSACTIONS_WRITE)
            resources: Resources = request.app.state.resources
            await ratelimit.enforce(resources, request.scope, key)
            try:
                body = TxCreate.model_validate(await request.json())
            except ValueError:  # not JSON, or invalid: FastAPI's handler says why
                return await fastapi_handler(request)
            idempotency_key = request.headers.get("idempotency-key")
            return await submit_transaction(body, resources, key, idempotency_key)

        return handler


_SUBMIT_ROUTE: dict[str, Any] = {
    "endpoint": submit_transaction,
    "methods": ["POST"],
    "status_code": status.HTTP_202_ACCEPTED,
    "response_model": TxRead,
    "responses": problem_responses(401, 403, 404, 409, 422),
    "route_class_override": _SubmitRoute,
}
router.add_api_route("", **_SUBMIT_ROUTE)


def route_submissions_first(app: FastAPI) -> None:
    """POST /v1/transactions again, as the first route of the app's own router (issue 17).

    FastAPI keeps each included router as one nested route: finding this one tried every
    route of the six routers included before it (health ... policies), then matched it twice
    more inside its own (5% of the API's CPU per submission, docs/performance.md item 33).
    The copy is the same route (path, handler, status, model, name), out of the OpenAPI
    document, which still describes the included one byte for byte. Other methods on the
    path fall through to the included router as before: GET lists, any other is 405 naming
    POST (the copy's own 405 is the same answer)."""
    app.router.add_api_route(
        f"{router.prefix}", **_SUBMIT_ROUTE, tags=router.tags, include_in_schema=False
    )
    app.router.routes.insert(0, app.router.routes.pop())


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
        result = await batch.submit_batch(
            session,
            body.transactions,
            api_key_id=key.id,
            idempotency_key=idempotency_key,
            restrictions=restrictions_of(key),
        )
    if isinstance(result, batch.BatchReplayed):
        items = [TxRead.of(tx) for tx in result.earlier]
        return _accepted(TxBatchRead(items=items), replayed=True)
    created = result.requests
    for chain_id, wallet_id in dict.fromkeys((r.chain_id, r.wallet_id) for r in created):
        await resources.doorbells.ring(chain_id, wallet_id)
    return _accepted(TxBatchRead(items=[TxRead.queued(r) for r in created]), replayed=False)


def _accepted(view: BaseModel, *, replayed: bool) -> Response:
    """202 with the view sent as is (FastAPI would validate a returned model a second time)."""
    return _answered(view.model_dump_json(by_alias=True), replayed=replayed)


def _answered(content: str | bytes, *, replayed: bool) -> Response:
    """202 with a view's JSON."""
    return Response(
        content,
        status_code=status.HTTP_202_ACCEPTED,
        media_type="application/json",
        headers={"Idempotent-Replayed": "true"} if replayed else None,
    )


class StatusCounts(BaseModel):
    since: datetime = Field(description="start of the window")
    window_s: int
    counts: dict[TxStatus, int] = Field(description="every status, 0 included")


@router.get("/counts", responses=problem_responses(401, 403, 422))
async def count_transactions(
    sessionmaker: SessionmakerDep,
    key: ReadKey,
    window_s: Annotated[int, Query(ge=1, le=30 * 86_400)] = 3600,
) -> StatusCounts:
    """Requests created in the last `window_s` seconds (default one hour), counted by their
    status now."""
    restrictions_of(key).check_unrestricted("count every wallet's requests")
    since = utcnow() - timedelta(seconds=window_s)
    async with unit_of_work(sessionmaker) as session:
        counts = await lane_stats.status_counts(session, since=since)
    return StatusCounts(since=since, window_s=window_s, counts=counts)


@router.get("/{tx_id}", responses=problem_responses(401, 403, 404))
async def get_transaction(tx_id: uuid.UUID, sessionmaker: SessionmakerDep, key: ReadKey) -> TxRead:
    """One transaction with its attempts, receipt and event log."""
    async with unit_of_work(sessionmaker) as session:
        tx = await service.get_transaction(session, tx_id)
        restrictions_of(key).check_reach(tx.wallet_id, tx.chain_id)
        return TxRead.of(tx)


@router.get("/{tx_id}/deliveries", responses=problem_responses(401, 403, 404, 422))
async def list_tx_deliveries(
    tx_id: uuid.UUID,
    sessionmaker: SessionmakerDep,
    key: ReadKey,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DeliveryList:
    """Webhook deliveries of this transaction's events to every endpoint, oldest first, each
    with its attempts and `webhook_id` (issue 22). Retry one with
    `POST /v1/webhooks/{webhook_id}/deliveries/{id}/retry` (scope `webhooks`)."""
    async with unit_of_work(sessionmaker) as session:
        tx = await service.get_transaction(session, tx_id, full=False)
        restrictions_of(key).check_reach(tx.wallet_id, tx.chain_id)
        return await webhooks.list_tx_deliveries(session, tx_id, limit=limit, cursor=cursor)


@router.get("", responses=problem_responses(401, 403, 404, 422))
async def list_transactions(
    sessionmaker: SessionmakerDep,
    key: ReadKey,
    status_: Annotated[TxStatus | None, Query(alias="status")] = None,
    wallet: Annotated[str | None, Query(max_length=64)] = None,
    chain_id: Annotated[ChainId | None, Query()] = None,
    hash_: Annotated[
        str | None,
        Query(alias="hash", pattern="^0x[0-9a-fA-F]{64}$", description="any attempt's hash"),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        # Printable ASCII, as a stored key is (a batch item's with its `#index`): a NUL reached
        # PostgreSQL and answered 500 (the OpenAPI fuzz test).
        Query(
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e]+$",
            description="as submitted, any API key",
        ),
    ] = None,
    order: Annotated[Literal["asc", "desc"], Query(description="by submission time")] = "asc",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> TxList:
    """List transactions in submission order (`order=desc`: newest first), filtered by
    status, wallet, chain, an attempt's hash or the Idempotency-Key they were sent with."""
    filters = TxFilters(
        status=status_,
        chain_id=chain_id,
        hash=hash_.lower() if hash_ else None,
        idempotency_key=idempotency_key,
        newest_first=order == "desc",
    )
    async with unit_of_work(sessionmaker) as session:
        rows, next_cursor = await service.list_transactions(
            session,
            limit=limit,
            cursor=cursor,
            filters=filters,
            wallet=wallet,
            restrictions=restrictions_of(key),
        )
        return TxList(items=[TxSummary.of(tx) for tx in rows], next_cursor=next_cursor)


@router.post("/{tx_id}/cancel", responses=problem_responses(401, 403, 404, 409))
async def cancel_transaction(
    tx_id: uuid.UUID, sessionmaker: SessionmakerDep, key: TxWriteKey
) -> TxRead:
    """Queued: cancelled at once. Signed or sent: a 0-value self-transfer at the same nonce
    competes with it; the final status says which won (`cancelled` or the request's own).
    Only the key that submitted the request, or an admin key, may cancel it (else 403)."""
    async with unit_of_work(sessionmaker) as session:
        cancelled = await service.cancel(
            session,
            tx_id,
            api_key_id=key.id,
            is_admin=apikeys.is_admin(key),
            restrictions=restrictions_of(key),
        )
        return TxRead.of(cancelled)
