"""Delivery of events to webhook endpoints: fan-out, claim, one HTTP attempt, record.

At least once: a delivery is claimed by moving its `next_attempt_at` past the attempt's
deadline (a lease) in a committed transaction before the request is sent, and its outcome is
recorded after. A worker that dies in between leaves it due again when the lease ends, so it
is sent again, with the same `webhook-id` (the event's id): receivers dedupe on it.
"""

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.logging import get_logger
from chainflow.core.urls import redact_url
from chainflow.domain.events import EventRow, append, envelope, envelope_id
from chainflow.domain.webhooks import repository, telemetry
from chainflow.domain.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from chainflow.domain.webhooks.rules import parse_retry_after, retry_delay_s
from chainflow.domain.webhooks.secrets import signing_secrets
from chainflow.domain.webhooks.service import DIRECT_ONLY, DISABLED_EVENT, subscription_of
from chainflow.domain.webhooks.signing import headers
from chainflow.infra.net.urlguard import ForbiddenAddress
from chainflow.infra.signing.keystore import DecryptionFailed, MasterKey

log = get_logger(__name__)
MAX_RESPONSE_READ = 64 * 1024  # the answer's body is not used; a bounded read keeps the socket
FANOUT_BATCH = 1000
FANOUT_ENDPOINTS = 200


@dataclass(frozen=True)
class DeliveryConfig:
    master: MasterKey
    retry_schedule: Sequence[float]
    disable_after_s: float
    timeout_s: float = 10.0
    lease_margin_s: float = 20.0

    @property
    def lease_s(self) -> float:
        """How long a claimed delivery stays invisible: the attempt's deadline and a margin
        for recording its outcome; a worker that died is replaced after that."""
        return self.timeout_s + self.lease_margin_s


@dataclass(frozen=True)
class Job:
    """One claimed delivery, ready to send: nothing in it needs the database."""

    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    url: str
    msg_id: str
    body: bytes
    headers: dict[str, str]
    event_at: datetime  # the event's change, for the delivery lag metric

    def __repr__(self) -> str:  # the headers carry signatures: keep them out of logs
        return f"Job(delivery_id={self.delivery_id}, msg_id={self.msg_id})"


@dataclass(frozen=True)
class Outcome:
    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int
    retry_after_s: float | None = None
    event_at: datetime | None = None

    @property
    def is_success(self) -> bool:
        return self.error is None


# Fan-out ----------------------------------------------------------------------------------


async def fan_out(session: AsyncSession, *, now: datetime) -> int:
    """Queue a delivery of every newly sequenced event to each enabled endpoint it matches,
    moving each endpoint's cursor; return how many were queued. Endpoints another worker is
    fanning out are skipped (locked)."""
    head = await repository.head_cursor(session)
    endpoints = await repository.lock_endpoints_to_fan_out(session, head, limit=FANOUT_ENDPOINTS)
    if not endpoints:
        return 0
    start = min(e.fanout_cursor for e in endpoints)
    events = await repository.events_after(session, start, limit=FANOUT_BATCH)
    last = events[-1].cursor or 0 if events else 0
    # A short batch holds every event up to `head` (cursors are gap-free and were committed
    # before `head` was read) and maybe some sequenced since: the endpoints have seen them all.
    reached = last if len(events) == FANOUT_BATCH else max(head, last)
    queued = 0
    for endpoint in endpoints:
        chosen = _matching(endpoint, events)
        repository.add_deliveries(session, endpoint.id, chosen, now=now)
        queued += len(chosen)
        endpoint.fanout_cursor = max(endpoint.fanout_cursor, reached)
    await session.flush()
    return queued


def _matching(endpoint: WebhookEndpoint, events: Sequence[EventRow]) -> list[EventRow]:
    rule = subscription_of(endpoint)
    return [
        e
        for e in events
        if (e.cursor or 0) > endpoint.fanout_cursor
        and e.type not in DIRECT_ONLY
        and rule.matches(
            e.type, wallet_id=str(e.wallet_id) if e.wallet_id else None, chain_id=e.chain_id
        )
    ]


# Claim ------------------------------------------------------------------------------------


async def claim(
    session: AsyncSession,
    config: DeliveryConfig,
    *,
    now: datetime,
    limit: int,
    busy: Mapping[uuid.UUID, int] | None = None,
    per_endpoint: int | None = None,
) -> list[Job]:
    """Lease up to `limit` due deliveries and build their requests (signed now).

    With `per_endpoint`, no endpoint gets more than that many in flight (`busy`: how many each
    already has in this process), so a slow receiver cannot take every slot.
    """
    if limit <= 0:
        return []
    busy = busy or {}
    full = [e for e, n in busy.items() if per_endpoint is not None and n >= per_endpoint]
    candidates = await repository.lock_due(session, now=now, limit=limit * 4, skip=full)
    rows = pick(candidates, limit=limit, busy=busy, per_endpoint=per_endpoint)
    if not rows:
        return []
    events = await repository.events_by_pk(session, [r.event_pk for r in rows])
    endpoints = await repository.endpoints_by_id(session, [r.endpoint_id for r in rows])
    sendable = []
    for row in rows:
        event = events.get(row.event_pk)
        if event is None or event.cursor is None:  # pruned, or not sequenced yet
            _finish_unsendable(row, event, now=now)
        else:
            sendable.append(row)
    telemetry.record_dropped(sum(1 for row in rows if row.event_pk not in events))
    await repository.lease(
        session, [r.id for r in sendable], until=now + timedelta(seconds=config.lease_s)
    )
    jobs: list[Job] = []
    for row in sendable:
        event = events[row.event_pk]
        try:
            jobs.append(_job(row, event, endpoints[row.endpoint_id], config, now=now))
        except DecryptionFailed:  # sealed under a key this process lacks: the others go on
            log.error("webhook.secret_unreadable", endpoint_id=str(row.endpoint_id))
    return jobs


def pick(
    rows: Sequence[WebhookDelivery],
    *,
    limit: int,
    busy: Mapping[uuid.UUID, int],
    per_endpoint: int | None,
) -> list[WebhookDelivery]:
    """The first `limit` rows, skipping those of an endpoint already at `per_endpoint`."""
    taken: dict[uuid.UUID, int] = dict(busy)
    chosen: list[WebhookDelivery] = []
    for row in rows:
        if len(chosen) == limit:
            break
        if per_endpoint is not None and taken.get(row.endpoint_id, 0) >= per_endpoint:
            continue
        taken[row.endpoint_id] = taken.get(row.endpoint_id, 0) + 1
        chosen.append(row)
    return chosen


def _finish_unsendable(row: WebhookDelivery, event: EventRow | None, *, now: datetime) -> None:
    if event is None:  # pruned by retention before it could be delivered
        row.status = DeliveryStatus.FAILED
        row.next_attempt_at = None
    else:  # the sequencer has not numbered it yet (a test event): try again shortly
        row.next_attempt_at = now + timedelta(seconds=0.2)


def _job(
    row: WebhookDelivery,
    event: EventRow,
    endpoint: WebhookEndpoint,
    config: DeliveryConfig,
    *,
    now: datetime,
) -> Job:
    msg_id = envelope_id(event.event_id)
    body = json.dumps(envelope(event), separators=(",", ":"), default=str).encode()
    secrets = signing_secrets(endpoint, master=config.master, now=now)
    return Job(
        delivery_id=row.id,
        endpoint_id=endpoint.id,
        url=endpoint.url,
        msg_id=msg_id,
        body=body,
        headers=headers(secrets, msg_id=msg_id, timestamp=int(now.timestamp()), body=body),
        event_at=event.created_at,
    )


# Send -------------------------------------------------------------------------------------


async def send(
    http: aiohttp.ClientSession, job: Job, *, timeout_s: float, now: datetime
) -> Outcome:
    """One POST: no redirect followed, `timeout_s` for the whole exchange, the answer's body
    read up to MAX_RESPONSE_READ. Never raises for what the receiver or network does."""
    started = time.monotonic()
    status: int | None = None
    retry_after: str | None = None
    error: str | None
    try:
        async with http.post(
            job.url,
            data=job.body,
            headers=job.headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            status = response.status
            retry_after = response.headers.get("Retry-After")
            await response.content.read(MAX_RESPONSE_READ)
        error = _status_error(status)
    except TimeoutError:
        error = "timeout"
    except aiohttp.ClientConnectorError as exc:
        error = "address_forbidden" if isinstance(exc.os_error, ForbiddenAddress) else "connect"
    except aiohttp.ClientError as exc:
        error = "connection_failed" if status is None else "response_failed"
        log.debug("webhook.client_error", error_type=type(exc).__name__)
    except Exception as exc:  # anything else is still an attempt, recorded and retried
        error = "client_error"
        log.warning("webhook.client_error", error_type=type(exc).__name__)
    duration_ms = int((time.monotonic() - started) * 1000)
    return Outcome(
        delivery_id=job.delivery_id,
        endpoint_id=job.endpoint_id,
        at=now,
        status_code=status,
        error=error,
        duration_ms=duration_ms,
        retry_after_s=parse_retry_after(retry_after, now=now),
        event_at=job.event_at,
    )


def _status_error(status: int) -> str | None:
    if 200 <= status < 300:
        return None
    return "redirect_not_followed" if 300 <= status < 400 else "non_2xx"


# Record -----------------------------------------------------------------------------------


async def record(
    session: AsyncSession, outcomes: Sequence[Outcome], config: DeliveryConfig, *, now: datetime
) -> None:
    """Store every attempt and move each delivery on: succeeded, due again after its retry
    delay, or failed for good; keep each endpoint's failure clock, and disable an endpoint
    that has failed everything for `disable_after_s` (appending `webhook.endpoint.disabled`)."""
    if not outcomes:
        return
    rows = {
        row.id: row
        for row in await repository.deliveries_by_id(session, [o.delivery_id for o in outcomes])
    }
    counted = []
    for outcome in outcomes:
        row = rows.get(outcome.delivery_id)
        if row is None:  # the endpoint was deleted meanwhile
            continue
        _apply(row, outcome, config)
        counted.append(_counted(row, outcome))
        session.add(
            WebhookAttempt(
                delivery_id=row.id,
                at=outcome.at,
                status_code=outcome.status_code,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
            )
        )
        _log(row, outcome)
    telemetry.record_attempts(counted)
    await _track_failures(session, outcomes, config, now=now)
    await session.flush()


def _counted(row: WebhookDelivery, outcome: Outcome) -> tuple[str, str | None, float, float | None]:
    """What the metrics count of one recorded attempt (telemetry.record_attempts)."""
    if outcome.is_success:
        kind = telemetry.DELIVERED
    else:
        kind = telemetry.GAVE_UP if row.status is DeliveryStatus.FAILED else telemetry.RETRY
    lag = None
    if outcome.is_success and outcome.event_at is not None:
        answered_at = outcome.at + timedelta(milliseconds=outcome.duration_ms)
        lag = telemetry.lag_s(outcome.event_at, answered_at)
    return kind, outcome.error, outcome.duration_ms / 1000, lag


def _apply(row: WebhookDelivery, outcome: Outcome, config: DeliveryConfig) -> None:
    row.attempt_count += 1
    row.leased_until = None
    row.last_status_code = outcome.status_code
    if outcome.is_success:
        row.status, row.next_attempt_at = DeliveryStatus.SUCCEEDED, None
        return
    delay = retry_delay_s(
        config.retry_schedule, row.attempt_count, retry_after_s=outcome.retry_after_s
    )
    if delay is None:
        row.status, row.next_attempt_at = DeliveryStatus.FAILED, None
    else:
        row.status = DeliveryStatus.PENDING
        row.next_attempt_at = outcome.at + timedelta(seconds=delay)


def _log(row: WebhookDelivery, outcome: Outcome) -> None:
    log.info(
        "webhook.attempted",
        delivery_id=str(row.id),
        endpoint_id=str(row.endpoint_id),
        event_id=envelope_id(row.event_id),
        attempt=row.attempt_count,
        status_code=outcome.status_code,
        error=outcome.error,
        duration_ms=outcome.duration_ms,
        delivery_status=row.status.value,
    )


async def _track_failures(
    session: AsyncSession, outcomes: Sequence[Outcome], config: DeliveryConfig, *, now: datetime
) -> None:
    succeeded = {o.endpoint_id for o in outcomes if o.is_success}
    failed = {o.endpoint_id for o in outcomes if not o.is_success} - succeeded
    if succeeded:
        await session.execute(
            update(WebhookEndpoint)
            .where(
                WebhookEndpoint.id.in_(list(succeeded)),
                WebhookEndpoint.first_failure_at.is_not(None),
            )
            .values(first_failure_at=None)
            .execution_options(synchronize_session=False)
        )
    if not failed:
        return
    await session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id.in_(list(failed)), WebhookEndpoint.first_failure_at.is_(None))
        .values(first_failure_at=now)
        .execution_options(synchronize_session=False)
    )
    cutoff = now - timedelta(seconds=config.disable_after_s)
    for endpoint in await repository.lock_failing_since(session, list(failed), cutoff):
        _disable(session, endpoint, now=now)


def _disable(session: AsyncSession, endpoint: WebhookEndpoint, *, now: datetime) -> None:
    since = endpoint.first_failure_at
    endpoint.enabled = False
    telemetry.record_disabled()
    endpoint.disabled_reason = "every delivery failed since " + (since or now).isoformat()
    endpoint.updated_at = now
    append(
        session,
        DISABLED_EVENT,
        data={
            "webhook": {"id": str(endpoint.id), "url": redact_url(endpoint.url)},
            "failing_since": (since or now).isoformat(),
            "reason": endpoint.disabled_reason,
        },
        at=now,
    )
    log.warning(
        "webhook.disabled", endpoint_id=str(endpoint.id), failing_since=(since or now).isoformat()
    )


async def prune(session: AsyncSession, *, before: datetime, limit: int) -> int:
    """Forget finished deliveries older than `before` (the events' retention), a batch."""
    return await repository.prune_finished(session, before=before, limit=limit)
