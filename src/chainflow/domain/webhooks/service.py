"""Use cases of webhook endpoints: create (secret shown once), change, rotate the secret,
test, and the deliveries: list, retry one, replay events."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.clock import utcnow
from chainflow.core.cursor import encode_cursor
from chainflow.domain.events import append
from chainflow.domain.webhooks import repository
from chainflow.domain.webhooks.errors import (
    DeliveryAlreadyPending,
    DeliveryInFlight,
    DeliveryNotFound,
    WebhookNotFound,
    WebhookUrlForbidden,
)
from chainflow.domain.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from chainflow.domain.webhooks.rules import Subscription
from chainflow.domain.webhooks.schemas import (
    DeliveryList,
    DeliveryRead,
    ReplayRequest,
    ReplayResult,
    WebhookCreate,
)
from chainflow.domain.webhooks.secrets import generate_secret, seal_into, stored_secrets
from chainflow.domain.webhooks.signing import secret_text
from chainflow.infra.net.urlguard import UrlForbidden, UrlGuard
from chainflow.infra.signing.keystore import MasterKey

MAX_REPLAY = 10_000
TEST_EVENT = "webhook.test"
DISABLED_EVENT = "webhook.endpoint.disabled"
# Events fan-out never sends: a test goes to its own endpoint only (queued by `send_test`).
DIRECT_ONLY = frozenset({TEST_EVENT})


@dataclass(frozen=True)
class SecretPolicy:
    master: MasterKey
    overlap_s: float


async def check_url(guard: UrlGuard, url: str) -> None:
    """Raises: WebhookUrlForbidden when the host is, or resolves to, a non-public address."""
    try:
        await guard.check_url(url)
    except UrlForbidden as exc:
        raise WebhookUrlForbidden(
            f"webhook URL refused: {exc.detail} (set CHAINFLOW_WEBHOOK_ALLOW_PRIVATE_URLS=true "
            "for development only)"
        ) from None


def subscription_of(endpoint: WebhookEndpoint) -> Subscription:
    return Subscription(
        event_types=endpoint.event_types,
        wallet_ids=endpoint.wallet_ids,
        chain_ids=endpoint.chain_ids,
    )


async def create_endpoint(
    session: AsyncSession, body: WebhookCreate, *, master: MasterKey
) -> tuple[WebhookEndpoint, str]:
    """Store a new endpoint (starting at the current head of events); return it and its
    secret as `whsec_…`, never stored in clear. The caller has checked the URL."""
    secret = generate_secret()
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        url=body.url,
        event_types=list(dict.fromkeys(body.events)),
        wallet_ids=[str(w) for w in body.wallet_ids] if body.wallet_ids is not None else None,
        chain_ids=list(body.chain_ids) if body.chain_ids is not None else None,
        description=body.description,
        enabled=True,
        fanout_cursor=await repository.head_cursor(session),
    )
    seal_into(endpoint, [secret], master=master)
    session.add(endpoint)
    await session.flush()
    return endpoint, secret_text(secret)


async def get_endpoint(
    session: AsyncSession, endpoint_id: uuid.UUID, *, for_update: bool = False
) -> WebhookEndpoint:
    endpoint = await repository.get_endpoint(session, endpoint_id, for_update=for_update)
    if endpoint is None:
        raise WebhookNotFound(f"webhook {endpoint_id} does not exist")
    return endpoint


async def list_endpoints(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> tuple[Sequence[WebhookEndpoint], str | None]:
    rows = await repository.list_endpoints(session, limit=limit, cursor=cursor)
    last = rows[-1] if len(rows) == limit else None
    return rows, encode_cursor(last.created_at, last.id) if last else None


async def update_endpoint(
    session: AsyncSession, endpoint: WebhookEndpoint, changes: dict[str, Any]
) -> None:
    """Apply a PATCH (the URL already checked). Enabling again clears the failure clock and
    starts the endpoint at the current head: what it missed while disabled is replayed on
    request, not flooded."""
    if "url" in changes:
        endpoint.url = changes["url"]
    if "events" in changes:
        endpoint.event_types = list(dict.fromkeys(changes["events"]))
    if "wallet_ids" in changes:
        ids = changes["wallet_ids"]
        endpoint.wallet_ids = [str(w) for w in ids] if ids is not None else None
    if "chain_ids" in changes:
        ids = changes["chain_ids"]
        endpoint.chain_ids = list(ids) if ids is not None else None
    if "description" in changes:
        endpoint.description = changes["description"]
    if "enabled" in changes and changes["enabled"] != endpoint.enabled:
        endpoint.enabled = changes["enabled"]
        if endpoint.enabled:
            endpoint.disabled_reason = None
            endpoint.first_failure_at = None
            endpoint.fanout_cursor = await repository.head_cursor(session)
        else:
            endpoint.disabled_reason = "disabled through the API"
    endpoint.updated_at = utcnow()
    await session.flush()


async def delete_endpoint(session: AsyncSession, endpoint: WebhookEndpoint) -> None:
    """Delete the endpoint with its deliveries and attempts (foreign keys cascade)."""
    await session.delete(endpoint)
    await session.flush()


async def rotate_secret(
    session: AsyncSession, endpoint: WebhookEndpoint, *, policy: SecretPolicy
) -> str:
    """A new secret; the current one keeps signing for `policy.overlap_s`. Returns the new
    secret as `whsec_…` (shown once)."""
    current = stored_secrets(endpoint, master=policy.master)[0]
    new = generate_secret()
    keep = [new, current] if policy.overlap_s > 0 else [new]
    seal_into(endpoint, keep, master=policy.master)
    endpoint.previous_secret_expires_at = (
        utcnow() + timedelta(seconds=policy.overlap_s) if policy.overlap_s > 0 else None
    )
    endpoint.updated_at = utcnow()
    await session.flush()
    return secret_text(new)


async def send_test(session: AsyncSession, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """Append a `webhook.test` event and queue it to this endpoint only."""
    now = utcnow()
    event = append(session, TEST_EVENT, data={"webhook_id": str(endpoint.id), "test": True}, at=now)
    await session.flush()
    delivery = repository.add_delivery(session, endpoint.id, event, now=now)
    await session.flush()
    return delivery


async def list_deliveries(
    session: AsyncSession,
    endpoint: WebhookEndpoint,
    *,
    status: DeliveryStatus | None,
    limit: int,
    cursor: str | None,
) -> DeliveryList:
    rows = await repository.list_deliveries(
        session, endpoint.id, status=status, limit=limit, cursor=cursor
    )
    return await _page(session, rows, limit=limit)


async def list_tx_deliveries(
    session: AsyncSession, tx_id: uuid.UUID, *, limit: int, cursor: str | None
) -> DeliveryList:
    """The deliveries of one transaction's events to every endpoint, oldest first."""
    rows = await repository.deliveries_of_tx(session, tx_id, limit=limit, cursor=cursor)
    return await _page(session, rows, limit=limit)


async def _page(
    session: AsyncSession, rows: Sequence[WebhookDelivery], *, limit: int
) -> DeliveryList:
    attempts = await repository.attempts_of(session, [row.id for row in rows])
    last = rows[-1] if len(rows) == limit else None
    return DeliveryList(
        items=[DeliveryRead.of(row, attempts[row.id]) for row in rows],
        next_cursor=encode_cursor(last.created_at, last.id) if last else None,
    )


async def backlogs(session: AsyncSession) -> list[repository.Backlog]:
    """Each endpoint's pending deliveries and the age of its oldest (for the metrics)."""
    return await repository.backlogs(session)


async def enabled_endpoints(session: AsyncSession) -> int:
    """How many endpoints are enabled (0: nothing is fanned out or claimed)."""
    return await repository.enabled_endpoints(session)


async def retry_delivery(
    session: AsyncSession, endpoint: WebhookEndpoint, delivery_id: uuid.UUID
) -> DeliveryRead:
    """One more attempt now: a failed or succeeded delivery becomes pending again, with the
    same webhook-id; a pending one is made due now.

    Locks the delivery, then its endpoint: the order the workers' `record` takes them in (a
    retry and a replay of one endpoint take turns on the endpoint's row, so the check below
    sees a replay's pending delivery of the same event).

    Raises:
        DeliveryInFlight: a worker is sending it now (its outcome is recorded within the lease).
        DeliveryAlreadyPending: another delivery of the same event to this endpoint is pending
            (a replay queued it): that one sends it.
    """
    delivery = await repository.get_delivery(session, endpoint.id, delivery_id, for_update=True)
    if delivery is None:
        raise DeliveryNotFound(f"delivery {delivery_id} of webhook {endpoint.id} does not exist")
    await repository.get_endpoint(session, endpoint.id, for_update=True)
    now = utcnow()
    if delivery.status is DeliveryStatus.PENDING:
        if delivery.leased_until is not None and delivery.leased_until > now:
            raise DeliveryInFlight(
                f"delivery {delivery_id} is being attempted now; retry after "
                f"{delivery.leased_until.isoformat()} if it has not succeeded by then",
                retry_at=delivery.leased_until.isoformat(),
            )
    else:
        other = await repository.other_pending(session, delivery)
        if other is not None:
            raise DeliveryAlreadyPending(
                f"delivery {other} of the same event to this webhook is pending; retry that one",
                pending_delivery_id=str(other),
            )
    delivery.status = DeliveryStatus.PENDING
    delivery.next_attempt_at = now
    delivery.leased_until = None
    await session.flush()
    attempts = await repository.attempts_of(session, [delivery.id])
    return DeliveryRead.of(delivery, attempts[delivery.id])


async def replay(
    session: AsyncSession, endpoint: WebhookEndpoint, request: ReplayRequest
) -> ReplayResult:
    """Queue again (as new deliveries, same webhook-ids) the events this endpoint subscribes
    to after a cursor or since a time, up to MAX_REPLAY of them. The caller holds the
    endpoint's row lock, so fan-out and other replays of it wait.

    Never a second pending delivery of an event to the endpoint: an event that has one is
    skipped (`already_pending`: that delivery sends it), and an enabled endpoint's replay stops
    at its fan-out position (the events after it are being queued by fan-out).
    """
    upto = endpoint.fanout_cursor if endpoint.enabled else None
    events = await repository.events_after(
        session, request.after or 0, limit=MAX_REPLAY, since=request.since, upto=upto
    )
    rule = subscription_of(endpoint)
    matching = [
        e
        for e in events
        if e.type not in DIRECT_ONLY
        and rule.matches(
            e.type,
            wallet_id=str(e.wallet_id) if e.wallet_id else None,
            chain_id=e.chain_id,
        )
    ]
    pending = await repository.pending_event_pks(session, endpoint.id, [e.id for e in matching])
    chosen = [e for e in matching if e.id not in pending]
    await repository.add_deliveries(session, endpoint.id, chosen, now=utcnow())
    await session.flush()
    last = events[-1].cursor if len(events) == MAX_REPLAY else None
    return ReplayResult(queued=len(chosen), already_pending=len(pending), last_cursor=last)
