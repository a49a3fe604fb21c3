"""Routes of webhook endpoints and their deliveries (DESIGN §13)."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.api.deps import (
    ResourcesDep,
    SessionmakerDep,
    WebhooksKey,
    actor,
    unrestricted_only,
)
from chainflow.api.resources import Resources
from chainflow.api.responses import problem_responses
from chainflow.domain import master_key
from chainflow.domain.apikeys.models import ApiKey
from chainflow.domain.audit import service as audit
from chainflow.domain.webhooks import service
from chainflow.domain.webhooks.models import DeliveryStatus
from chainflow.domain.webhooks.schemas import (
    DeliveryList,
    DeliveryRead,
    ReplayRequest,
    ReplayResult,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookRead,
    WebhookUpdate,
)
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.net.urlguard import UrlGuard

router = APIRouter(
    prefix="/v1/webhooks",
    tags=["webhooks"],
    dependencies=[
        unrestricted_only("manage webhooks (they deliver every wallet's events)")
    ],  # issue 21
)


def _guard(resources: Resources) -> UrlGuard:
    return UrlGuard(allow_private=resources.settings.webhook_allow_private_urls)


@router.post("", status_code=status.HTTP_201_CREATED, responses=problem_responses(401, 403, 422))
async def create_webhook(
    request: Request, body: WebhookCreate, resources: ResourcesDep, key: WebhooksKey
) -> WebhookCreated:
    """Add an endpoint. Its `secret` is in this answer only: keep it to verify deliveries.
    Events sequenced from now on are delivered (earlier ones: replay)."""
    await service.check_url(_guard(resources), body.url)
    async with unit_of_work(resources.sessionmaker) as session:
        await master_key.check_sealing_key(session, master=resources.master_key)
        endpoint, secret = await service.create_endpoint(session, body, master=resources.master_key)
        _audit(session, request, key, "webhook.created", endpoint.id)
        read = WebhookRead.of(endpoint)
    return WebhookCreated(**read.model_dump(), secret=secret)


@router.get("", responses=problem_responses(401, 403, 422))
async def list_webhooks(
    sessionmaker: SessionmakerDep,
    _key: WebhooksKey,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> WebhookList:
    """List endpoints in creation order, one page at a time."""
    async with unit_of_work(sessionmaker) as session:
        rows, next_cursor = await service.list_endpoints(session, limit=limit, cursor=cursor)
        return WebhookList(items=[WebhookRead.of(r) for r in rows], next_cursor=next_cursor)


@router.get("/{webhook_id}", responses=problem_responses(401, 403, 404, 422))
async def get_webhook(
    webhook_id: uuid.UUID, sessionmaker: SessionmakerDep, _key: WebhooksKey
) -> WebhookRead:
    async with unit_of_work(sessionmaker) as session:
        return WebhookRead.of(await service.get_endpoint(session, webhook_id))


@router.patch("/{webhook_id}", responses=problem_responses(401, 403, 404, 422))
async def update_webhook(
    request: Request,
    webhook_id: uuid.UUID,
    body: WebhookUpdate,
    resources: ResourcesDep,
    key: WebhooksKey,
) -> WebhookRead:
    """Change `url`, `events`, `wallet_ids`, `chain_ids`, `enabled` or `description`."""
    changes = body.model_dump(exclude_unset=True)
    if "url" in changes:
        await service.check_url(_guard(resources), changes["url"])
    async with unit_of_work(resources.sessionmaker) as session:
        endpoint = await service.get_endpoint(session, webhook_id, for_update=True)
        await service.update_endpoint(session, endpoint, changes)
        _audit(session, request, key, "webhook.updated", endpoint.id)
        return WebhookRead.of(endpoint)


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 422),
)
async def delete_webhook(
    request: Request, webhook_id: uuid.UUID, sessionmaker: SessionmakerDep, key: WebhooksKey
) -> Response:
    """Delete the endpoint and its delivery history; nothing more is sent to it."""
    async with unit_of_work(sessionmaker) as session:
        endpoint = await service.get_endpoint(session, webhook_id, for_update=True)
        await service.delete_endpoint(session, endpoint)
        _audit(session, request, key, "webhook.deleted", webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{webhook_id}/rotate-secret", responses=problem_responses(401, 403, 404, 422))
async def rotate_secret(
    request: Request, webhook_id: uuid.UUID, resources: ResourcesDep, key: WebhooksKey
) -> WebhookCreated:
    """A new secret (in this answer only); the previous one also signs every delivery for
    `CHAINFLOW_WEBHOOK_SECRET_OVERLAP_S`, so receivers can switch without a gap."""
    policy = service.SecretPolicy(
        master=resources.master_key, overlap_s=resources.settings.webhook_secret_overlap_s
    )
    async with unit_of_work(resources.sessionmaker) as session:
        endpoint = await service.get_endpoint(session, webhook_id, for_update=True)
        await master_key.check_sealing_key(session, master=resources.master_key)
        secret = await service.rotate_secret(session, endpoint, policy=policy)
        _audit(session, request, key, "webhook.secret_rotated", endpoint.id)
        read = WebhookRead.of(endpoint)
    return WebhookCreated(**read.model_dump(), secret=secret)


@router.post(
    "/{webhook_id}/test",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(401, 403, 404, 422),
)
async def send_test_event(
    webhook_id: uuid.UUID, sessionmaker: SessionmakerDep, _key: WebhooksKey
) -> DeliveryRead:
    """Queue a `webhook.test` event to this endpoint only."""
    async with unit_of_work(sessionmaker) as session:
        endpoint = await service.get_endpoint(session, webhook_id)
        delivery = await service.send_test(session, endpoint)
        return DeliveryRead.of(delivery, [])


@router.get("/{webhook_id}/deliveries", responses=problem_responses(401, 403, 404, 422))
async def list_deliveries(
    webhook_id: uuid.UUID,
    sessionmaker: SessionmakerDep,
    _key: WebhooksKey,
    delivery_status: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DeliveryList:
    """Deliveries oldest first, each with every attempt (status code, error class, time)."""
    async with unit_of_work(sessionmaker) as session:
        endpoint = await service.get_endpoint(session, webhook_id)
        return await service.list_deliveries(
            session, endpoint, status=delivery_status, limit=limit, cursor=cursor
        )


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def retry_delivery(
    webhook_id: uuid.UUID, delivery_id: uuid.UUID, sessionmaker: SessionmakerDep, _key: WebhooksKey
) -> DeliveryRead:
    """One more attempt now, with the same webhook-id. `409 webhook_delivery_in_flight` while
    a worker is sending it, `409 webhook_delivery_pending` while another delivery of the same
    event is pending: never two sends of one event at once."""
    async with unit_of_work(sessionmaker) as session:
        endpoint = await service.get_endpoint(session, webhook_id)  # locked after the delivery
        return await service.retry_delivery(session, endpoint, delivery_id)


@router.post(
    "/{webhook_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(401, 403, 404, 422),
)
async def replay(
    webhook_id: uuid.UUID, body: ReplayRequest, sessionmaker: SessionmakerDep, _key: WebhooksKey
) -> ReplayResult:
    """Queue again the subscribed events `since` a time or `after` a cursor (up to 10,000;
    go on from `last_cursor`). Events with a pending delivery to this endpoint are skipped
    (`already_pending`), and so are those fan-out has not reached yet: it queues them."""
    async with unit_of_work(sessionmaker) as session:
        endpoint = await service.get_endpoint(session, webhook_id, for_update=True)
        return await service.replay(session, endpoint, body)


def _audit(
    session: AsyncSession, request: Request, key: ApiKey, action: str, webhook_id: uuid.UUID
) -> None:
    audit.record(session, actor(request, key), action, resource="webhook", resource_id=webhook_id)
