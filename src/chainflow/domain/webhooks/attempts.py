"""One HTTP attempt of a claimed delivery, and the record of a round's attempts.

A round's outcomes are written together: the deliveries are locked in one SELECT, moved on by
one UPDATE (infra/db/bulk.update_rows: one statement on PostgreSQL whatever their number) and
their attempts stored by one multi-row INSERT.
"""

import functools
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.logging import get_logger
from chainflow.core.urls import redact_url
from chainflow.domain.events import append, envelope_id
from chainflow.domain.webhooks import repository, telemetry
from chainflow.domain.webhooks.jobs import Job
from chainflow.domain.webhooks.models import DeliveryStatus, WebhookEndpoint
from chainflow.domain.webhooks.repository import LockedDelivery
from chainflow.domain.webhooks.rules import parse_retry_after, retry_delay_s
from chainflow.domain.webhooks.service import DISABLED_EVENT
from chainflow.infra.net.urlguard import ForbiddenAddress
from chainflow.infra.signing.keystore import MasterKey

log = get_logger(__name__)
MAX_RESPONSE_READ = 64 * 1024  # the answer's body is not used; a bounded read keeps the socket


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

    def may_start(self, lease_until: datetime, *, now: datetime) -> bool:
        """Whether an attempt starting now ends, and is recorded, inside its lease: one that
        waited too long in its worker's queue is given back instead of sent, so no other
        worker can be sending it at the same time."""
        return now + timedelta(seconds=self.timeout_s + self.lease_margin_s / 2) <= lease_until


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
    # False: never sent (its lease ran out while it waited for a slot); due again at once.
    attempted: bool = True
    # The lease it was claimed under: a job given back releases its delivery only while that
    # lease is still the delivery's (not once another worker has claimed it again).
    lease_until: datetime | None = None

    @property
    def is_success(self) -> bool:
        return self.attempted and self.error is None


def given_back(job: Job, *, now: datetime) -> Outcome:
    """The outcome of a job not sent: its delivery is released, no attempt counted."""
    return Outcome(
        job.delivery_id,
        job.endpoint_id,
        now,
        None,
        None,
        0,
        attempted=False,
        lease_until=job.lease_until,
    )


def failed_attempt(job: Job, *, now: datetime) -> Outcome:
    """The outcome of a send that raised instead of answering: an attempt, failed
    (`client_error`), so that it counts like any other failure."""
    return Outcome(
        job.delivery_id,
        job.endpoint_id,
        now,
        None,
        "client_error",
        0,
        event_at=job.event_at,
    )


# Send -------------------------------------------------------------------------------------


async def send(
    http: aiohttp.ClientSession, job: Job, *, timeout_s: float, now: datetime
) -> Outcome:
    """One POST: no redirect followed, `timeout_s` for the whole exchange, the answer's body
    read up to MAX_RESPONSE_READ. Never raises for what the receiver or network does."""
    started = time.monotonic()
    status: int | None = None
    retry_after_s: float | None = None
    error: str | None
    try:
        async with http.post(
            job.url,
            data=job.body,
            headers=job.headers(now=now),
            allow_redirects=False,
            timeout=_timeout(timeout_s),
        ) as response:
            status = response.status
            if not 200 <= status < 300:  # a 2xx is a delivery, whatever else it says
                retry_after_s = parse_retry_after(response.headers.get("Retry-After"), now=now)
            await _drain(response)
        error = _status_error(status)
    except TimeoutError:
        error = "timeout"
    except aiohttp.ClientConnectorError as exc:
        error = "address_forbidden" if isinstance(exc.os_error, ForbiddenAddress) else "connect"
    except aiohttp.ClientError as exc:
        error = "connection_failed" if status is None else "response_failed"
        log.debug("webhook.client_error", error_type=type(exc).__name__)
    except Exception as exc:
        # Anything else, in the client or in reading the answer (a header this code did not
        # expect), is still an attempt: recorded as failed, so it is retried, backed off,
        # failed for good and counted towards disabling the endpoint like any other failure.
        error = "client_error"
        log.warning(
            "webhook.client_error",
            error_type=type(exc).__name__,
            delivery_id=str(job.delivery_id),
            status_code=status,
        )
    duration_ms = int((time.monotonic() - started) * 1000)
    return Outcome(
        delivery_id=job.delivery_id,
        endpoint_id=job.endpoint_id,
        at=now,
        status_code=status,
        error=error,
        duration_ms=duration_ms,
        retry_after_s=retry_after_s,
        event_at=job.event_at,
    )


@functools.cache
def _timeout(total_s: float) -> aiohttp.ClientTimeout:
    """One (immutable) ClientTimeout per setting, not one per POST."""
    return aiohttp.ClientTimeout(total=total_s)


async def _drain(response: aiohttp.ClientResponse) -> None:
    """Read the answer to its end (up to MAX_RESPONSE_READ): a connection whose answer was
    read whole goes back to the pool and carries the endpoint's next delivery (keep-alive);
    one left unread is closed."""
    left = MAX_RESPONSE_READ
    while left > 0 and not response.content.at_eof():
        chunk = await response.content.read(left)
        if not chunk:
            return
        left -= len(chunk)


def _status_error(status: int) -> str | None:
    if 200 <= status < 300:
        return None
    return "redirect_not_followed" if 300 <= status < 400 else "non_2xx"


# Record -----------------------------------------------------------------------------------


async def record(
    session: AsyncSession, outcomes: Sequence[Outcome], config: DeliveryConfig, *, now: datetime
) -> None:
    """Store every attempt and move each delivery on: succeeded, due again after its retry
    delay, or failed for good (a job given back unsent: due again now); keep each endpoint's
    failure clock, and disable an endpoint that has failed everything for `disable_after_s`
    (appending `webhook.endpoint.disabled`)."""
    if not outcomes:
        return
    if session.get_bind().dialect.name == "postgresql" and all(o.is_success for o in outcomes):
        await _record_successes(session, outcomes, config, now=now)
        return
    ids = [o.delivery_id for o in outcomes]
    locked, clocks = await repository.lock_to_record_with_clocks(session, ids)
    rows = {row.id: row for row in locked}
    moves: list[dict[str, object]] = []
    attempts: list[dict[str, object]] = []
    counted = []
    delivered: Counter[uuid.UUID] = Counter()
    for outcome in outcomes:
        row = rows.get(outcome.delivery_id)
        if row is None:  # the endpoint was deleted meanwhile
            continue
        if not outcome.attempted and row.leased_until != outcome.lease_until:
            continue  # given back after another worker claimed it again: that lease stands
        move = _moved(row, outcome, config, now=now)
        moves.append(move)
        if not outcome.attempted:
            continue
        attempts.append(_attempt(outcome))
        counted.append(_counted(move, outcome))
        if outcome.is_success:
            delivered[row.endpoint_id] += 1
        else:
            _log(row, move, outcome)
    await repository.store_outcomes(session, moves, attempts)
    telemetry.record_attempts(counted)
    _log_delivered(delivered)
    attempted = [o for o in outcomes if o.attempted]
    await _track_failures(session, attempted, clocks, config, now=now)


async def _record_successes(
    session: AsyncSession, outcomes: Sequence[Outcome], config: DeliveryConfig, *, now: datetime
) -> None:
    """`record` of attempts that all succeeded, on PostgreSQL: one statement moves the
    deliveries and stores the attempts (repository.record_successes); what it does to each is
    what `_moved` and `_attempt` give a success, which needs nothing read first."""
    moved = await repository.record_successes(
        session,
        [o.delivery_id for o in outcomes],
        status_codes=[o.status_code for o in outcomes],
        ats=[o.at for o in outcomes],
        durations_ms=[o.duration_ms for o in outcomes],
        now=now,
    )
    by_id = {o.delivery_id: o for o in outcomes}
    clocks = {by_id[delivery_id].endpoint_id for delivery_id, clock in moved if clock}
    there = {delivery_id for delivery_id, _ in moved}
    recorded = [o for o in outcomes if o.delivery_id in there]  # none of a deleted endpoint
    telemetry.record_attempts([_counted(_SUCCEEDED, o) for o in recorded])
    _log_delivered(Counter(o.endpoint_id for o in recorded))
    await _track_failures(session, recorded, clocks, config, now=now)


_SUCCEEDED: dict[str, object] = {"status": DeliveryStatus.SUCCEEDED}


def _moved(
    row: LockedDelivery, outcome: Outcome, config: DeliveryConfig, *, now: datetime
) -> dict[str, object]:
    """The delivery's new state after this outcome (all rows with the same names)."""
    count = row.attempt_count + (1 if outcome.attempted else 0)
    due: datetime | None = now
    status = DeliveryStatus.PENDING
    if outcome.is_success:
        status, due = DeliveryStatus.SUCCEEDED, None
    elif outcome.attempted:
        delay = retry_delay_s(config.retry_schedule, count, retry_after_s=outcome.retry_after_s)
        if delay is None:
            status, due = DeliveryStatus.FAILED, None
        else:
            due = outcome.at + timedelta(seconds=delay)
    code = outcome.status_code if outcome.attempted else row.last_status_code
    return {
        "id": row.id,
        "attempt_count": count,
        "status": status,
        "next_attempt_at": due,
        "leased_until": None,
        "last_status_code": code,
        "updated_at": now,
    }


def _attempt(outcome: Outcome) -> dict[str, object]:
    return {
        "id": uuid.uuid4(),
        "delivery_id": outcome.delivery_id,
        "at": outcome.at,
        "status_code": outcome.status_code,
        "error": outcome.error,
        "duration_ms": outcome.duration_ms,
    }


def _counted(
    move: dict[str, object], outcome: Outcome
) -> tuple[str, str | None, float, float | None]:
    """What the metrics count of one recorded attempt (telemetry.record_attempts)."""
    if outcome.is_success:
        kind = telemetry.DELIVERED
    else:
        kind = telemetry.GAVE_UP if move["status"] is DeliveryStatus.FAILED else telemetry.RETRY
    lag = None
    if outcome.is_success and outcome.event_at is not None:
        answered_at = outcome.at + timedelta(milliseconds=outcome.duration_ms)
        lag = telemetry.lag_s(outcome.event_at, answered_at)
    return kind, outcome.error, outcome.duration_ms / 1000, lag


def _log_delivered(delivered: Counter[uuid.UUID]) -> None:
    """One line per record for the attempts that succeeded (each is in webhook_attempts and
    the deliveries API): a line per success through the redacting log pipeline was ~11% of
    the delivery loop's Python (docs/performance.md)."""
    if delivered:
        log.info(
            "webhook.delivered",
            count=delivered.total(),
            endpoints={str(endpoint): n for endpoint, n in delivered.items()},
        )


def _log(row: LockedDelivery, move: dict[str, object], outcome: Outcome) -> None:
    """An attempt that failed (to be retried, or for good), each on its own line."""
    status = move["status"]
    log.info(
        "webhook.attempted",
        delivery_id=str(row.id),
        endpoint_id=str(row.endpoint_id),
        event_id=envelope_id(row.event_id),
        attempt=move["attempt_count"],
        status_code=outcome.status_code,
        error=outcome.error,
        duration_ms=outcome.duration_ms,
        delivery_status=status.value if isinstance(status, DeliveryStatus) else status,
    )


async def _track_failures(
    session: AsyncSession,
    outcomes: Sequence[Outcome],
    clocks: set[uuid.UUID],
    config: DeliveryConfig,
    *,
    now: datetime,
) -> None:
    """Stop the failure clock of each endpoint with a success, start it for each with only
    failures; disable the endpoints failing for `disable_after_s`.

    `clocks`: the endpoints whose clock ran when this record locked its deliveries (read in
    this transaction): a success resets only those, so the common record (successes, no
    clock) runs no UPDATE of the endpoints. A clock started by another worker's record that
    commits after that read and before this one commits is left running; the UPDATE that
    this saves would have missed it as well while that record was uncommitted, and the next
    success recorded after it stops it."""
    succeeded = {o.endpoint_id for o in outcomes if o.is_success}
    failed = {o.endpoint_id for o in outcomes if not o.is_success} - succeeded
    if succeeded & clocks:
        await session.execute(
            update(WebhookEndpoint)
            .where(
                WebhookEndpoint.id.in_(list(succeeded & clocks)),
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
    await session.flush()


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
