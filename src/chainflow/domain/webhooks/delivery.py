"""Delivery of events to webhook endpoints: fan-out and claim (attempts.py sends and records).

At least once: a delivery is claimed by setting its `leased_until` past the attempt's
deadline (a lease) in a committed transaction before the request is sent, and its outcome is
recorded after. A worker that dies in between leaves it due again when the lease ends, so it
is sent again, with the same `webhook-id` (the event's id): receivers dedupe on it.
"""

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core import jsondepth
from chainflow.core.logging import get_logger
from chainflow.core.types import SecretBytes
from chainflow.domain.events import envelope, envelope_id
from chainflow.domain.webhooks import repository, telemetry
from chainflow.domain.webhooks.attempts import (
    DeliveryConfig,
    Outcome,
    failed_attempt,
    given_back,
    record,
    send,
)
from chainflow.domain.webhooks.jobs import Job
from chainflow.domain.webhooks.models import WebhookEndpoint
from chainflow.domain.webhooks.repository import DueDelivery, EventHead, EventSnapshot
from chainflow.domain.webhooks.secrets import signing_secrets
from chainflow.domain.webhooks.service import DIRECT_ONLY, subscription_of
from chainflow.infra.signing.keystore import DecryptionFailed

log = get_logger(__name__)
FANOUT_BATCH = 1000
FANOUT_ENDPOINTS = 200
__all__ = [
    "DeliveryConfig",
    "FanOut",
    "Job",
    "Outcome",
    "claim",
    "failed_attempt",
    "fan_out",
    "fan_out_batch",
    "given_back",
    "pick",
    "pick_fairly",
    "prune",
    "record",
    "send",
]


# Fan-out ----------------------------------------------------------------------------------


class FanOut(NamedTuple):
    queued: int  # deliveries queued
    # Events may still wait for some endpoint: a batch's limit was reached, or every endpoint
    # behind was locked by another worker's fan-out (which may have read the head before the
    # latest events were sequenced). The loop fans out again next turn, not in a second.
    behind: bool


async def fan_out(session: AsyncSession, *, now: datetime) -> int:
    """Queue a delivery of every newly sequenced event to each enabled endpoint it matches
    (up to a batch), moving each endpoint's cursor; return how many were queued."""
    return (await fan_out_batch(session, now=now)).queued


async def fan_out_batch(session: AsyncSession, *, now: datetime) -> FanOut:
    """`fan_out`, telling also whether events may remain behind. Endpoints another worker is
    fanning out are skipped (locked)."""
    endpoints, head = await repository.lock_endpoints_behind_head(session, limit=FANOUT_ENDPOINTS)
    if not endpoints:
        return FanOut(0, behind=await repository.any_endpoint_behind(session))
    start = min(e.fanout_cursor for e in endpoints)
    globs = [glob for endpoint in endpoints for glob in endpoint.event_types]
    events = await repository.event_heads_after(
        session, start, limit=FANOUT_BATCH, type_globs=globs
    )
    last = events[-1].cursor or 0 if events else 0
    # A short batch holds every event up to `head` (cursors are gap-free and were committed
    # before `head` was read) and maybe some sequenced since: the endpoints have seen them all.
    reached = last if len(events) == FANOUT_BATCH else max(head, last)
    queued = 0
    for endpoint in endpoints:
        chosen = _matching(endpoint, events)
        await repository.add_deliveries(session, endpoint.id, chosen, now=now)
        queued += len(chosen)
        endpoint.fanout_cursor = max(endpoint.fanout_cursor, reached)
    await session.flush()
    return FanOut(queued, behind=len(events) == FANOUT_BATCH or len(endpoints) == FANOUT_ENDPOINTS)


def _matching(endpoint: WebhookEndpoint, events: Sequence[EventHead]) -> list[EventHead]:
    rule = subscription_of(endpoint)
    by_wallet = bool(rule.wallet_ids)  # else no event's wallet is looked at (nor turned to text)
    return [
        e
        for e in events
        if (e.cursor or 0) > endpoint.fanout_cursor
        and e.type not in DIRECT_ONLY
        and rule.matches(
            e.type,
            wallet_id=str(e.wallet_id) if by_wallet and e.wallet_id else None,
            chain_id=e.chain_id,
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
    sends_per_endpoint: int | None = None,
    enabled_endpoints: int | None = None,
) -> list[Job]:
    """Lease up to `limit` due deliveries and build their requests (signed now).

    Fair over endpoints: each endpoint's oldest due rows are taken up to its share, and the
    endpoint holding fewest jobs is served first, so a backlogged endpoint's older rows do not
    fill the claim. With `per_endpoint`, no endpoint gets more than that many held in this
    process (`busy`: how many each holds already), so a slow receiver cannot take every slot. With
    `sends_per_endpoint` (how many of an endpoint's jobs the caller sends at once), a job that
    waits behind earlier ones of its endpoint gets a lease longer by a timeout per wave of
    sends ahead of it. A delivery whose secret cannot be read is given back, not leased.
    `enabled_endpoints`: how many endpoints are enabled, as the caller last read it (None:
    unknown).
    """
    if limit <= 0:
        return []
    busy = busy or {}
    full = [e for e, n in busy.items() if per_endpoint is not None and n >= per_endpoint]
    lock_limit = _lock_limit(limit, busy, per_endpoint, enabled_endpoints)
    if session.get_bind().dialect.name == "postgresql":
        return await _claim_in_one(
            session,
            config,
            now=now,
            lock_limit=lock_limit,
            limit=limit,
            full=full,
            busy=busy,
            per_endpoint=per_endpoint,
            sends_per_endpoint=sends_per_endpoint,
        )
    candidates = await repository.due_by_endpoint(session, now=now, limit=lock_limit, skip=full)
    rows = pick(pick_fairly(candidates, busy), limit=limit, busy=busy, per_endpoint=per_endpoint)
    if not rows:
        return []
    events = await repository.event_snapshots(session, [r.event_pk for r in rows])
    endpoints = await repository.endpoints_by_id(session, [r.endpoint_id for r in rows])
    sendable = []
    pruned: list[uuid.UUID] = []
    unsequenced: list[uuid.UUID] = []
    for row in rows:
        event = events.get(row.event_pk)
        if event is None:  # pruned by retention before it could be delivered
            pruned.append(row.id)
        elif event.cursor is None:  # the sequencer has not numbered it yet (a test event)
            unsequenced.append(row.id)
        else:
            sendable.append(row)
    await repository.fail(session, pruned)
    await repository.release(session, unsequenced, due=now + timedelta(seconds=0.2))
    telemetry.record_dropped(len(pruned))
    jobs = _jobs(sendable, events, endpoints, config, now=now)
    waves = _waves(jobs, busy, sends_per_endpoint)
    leases = {
        job.delivery_id: now + timedelta(seconds=config.lease_s + wave * config.timeout_s)
        for job, wave in zip(jobs, waves, strict=True)
    }
    await repository.lease(session, leases)
    unread = [row.id for row in sendable if row.id not in leases]
    # Not leased: the retry API may act on it at once; tried again after a lease's time.
    await repository.release(session, unread, due=now + timedelta(seconds=config.lease_s))
    return [replace(job, lease_until=leases[job.delivery_id]) for job in jobs]


async def _claim_in_one(
    session: AsyncSession,
    config: DeliveryConfig,
    *,
    now: datetime,
    lock_limit: int,
    limit: int,
    full: Sequence[uuid.UUID],
    busy: Mapping[uuid.UUID, int],
    per_endpoint: int | None,
    sends_per_endpoint: int | None,
) -> list[Job]:
    """`claim` on PostgreSQL: the rows are locked, picked and leased, and their events read,
    by one statement (repository.claim_due); what cannot be sent is then moved as `claim`
    moves it (a pruned event: failed; an unsequenced one: due in 0.2 s; an unreadable
    secret: due after a lease's time), none of them leased any more. A wave is counted over
    the rows picked, not only the jobs built: a rare job (next to an unsendable row) may get
    a lease a timeout longer than `claim` would give it, never shorter."""
    claimed = await repository.claim_due(
        session,
        now=now,
        lock_limit=lock_limit,
        limit=limit,
        skip=full,
        busy=busy,
        per_endpoint=per_endpoint,
        sends_per_endpoint=sends_per_endpoint,
        lease_s=config.lease_s,
        timeout_s=config.timeout_s,
    )
    if not claimed:
        return []
    endpoints = await repository.endpoints_by_id(session, [c.delivery.endpoint_id for c in claimed])
    events: dict[int, EventSnapshot] = {}
    sendable: list[DueDelivery] = []
    pruned: list[uuid.UUID] = []
    unsequenced: list[uuid.UUID] = []
    for c in claimed:
        if c.event is None:  # pruned by retention before it could be delivered
            pruned.append(c.delivery.id)
        elif c.event.cursor is None:  # the sequencer has not numbered it yet (a test event)
            unsequenced.append(c.delivery.id)
        else:
            events[c.event.id] = c.event
            sendable.append(c.delivery)
    await repository.fail(session, pruned)
    await repository.release(session, unsequenced, due=now + timedelta(seconds=0.2))
    telemetry.record_dropped(len(pruned))
    jobs = _jobs(sendable, events, endpoints, config, now=now)
    built = {job.delivery_id for job in jobs}
    unread = [row.id for row in sendable if row.id not in built]
    # Not sent: the retry API may act on it at once; tried again after a lease's time.
    await repository.release(session, unread, due=now + timedelta(seconds=config.lease_s))
    leases = {c.delivery.id: c.leased_until for c in claimed}
    return [replace(job, lease_until=leases[job.delivery_id]) for job in jobs]


def _lock_limit(
    limit: int, busy: Mapping[uuid.UUID, int], per_endpoint: int | None, endpoints: int | None
) -> int:
    """How many due rows a claim locks: twice the rows wanted, room for those of an endpoint
    that reaches `per_endpoint` in this batch, without locking (and loading) 4 times a
    burst's claim. With one enabled endpoint no more than its room can be picked: twice the
    limit locked up to 4 times the rows a claim used (a lock is a WAL record and a write of
    the row's page, and rows the other workers' claims step over; docs/performance.md item
    29). Its room is taken as `per_endpoint` less what this process holds of it, or of the
    one endpoint it holds jobs of (an endpoint disabled with jobs held: a smaller claim
    until they finish)."""
    if per_endpoint is None or endpoints != 1:
        return limit * 2
    held = next(iter(busy.values())) if len(busy) == 1 else 0
    # At its cap: 0, not a scan that skips its rows (every pending row of the endpoint, each
    # turn, ~10 % more CPU per delivery in bench.webhooks). An endpoint created since the
    # count was read waits for the next read (every turn, at most _ENDPOINTS_READ_S old).
    return max(0, min(limit * 2, per_endpoint - held))


def _jobs(
    rows: Sequence[DueDelivery],
    events: Mapping[int, EventSnapshot],
    endpoints: Mapping[uuid.UUID, WebhookEndpoint],
    config: DeliveryConfig,
    *,
    now: datetime,
) -> list[Job]:
    """The requests of these rows; an endpoint's secrets are unsealed once. A row whose
    endpoint's secret cannot be read is left out (and logged once per endpoint)."""
    secrets: dict[uuid.UUID, tuple[SecretBytes, ...] | None] = {}
    jobs: list[Job] = []
    for row in rows:
        endpoint = endpoints[row.endpoint_id]
        if endpoint.id not in secrets:
            try:
                secrets[endpoint.id] = tuple(
                    signing_secrets(endpoint, master=config.master, now=now)
                )
            except DecryptionFailed:  # sealed under a key this process lacks: the others go on
                secrets[endpoint.id] = None
                log.error("webhook.secret_unreadable", endpoint_id=str(endpoint.id))
        signing = secrets[endpoint.id]
        if signing is not None:
            jobs.append(_job(row, events[row.event_pk], endpoint, signing, now=now))
    return jobs


def _waves(
    jobs: Sequence[Job], busy: Mapping[uuid.UUID, int], sends_per_endpoint: int | None
) -> list[int]:
    """How many rounds of its endpoint's sends each job may wait for before its own."""
    if sends_per_endpoint is None:
        return [0] * len(jobs)
    ahead: dict[uuid.UUID, int] = dict(busy)
    waves = []
    for job in jobs:
        position = ahead.get(job.endpoint_id, 0)
        ahead[job.endpoint_id] = position + 1
        waves.append(position // sends_per_endpoint)
    return waves


def pick(
    rows: Sequence[DueDelivery],
    *,
    limit: int,
    busy: Mapping[uuid.UUID, int],
    per_endpoint: int | None,
) -> list[DueDelivery]:
    """The first `limit` rows, skipping those of an endpoint already at `per_endpoint`."""
    taken: dict[uuid.UUID, int] = dict(busy)
    chosen: list[DueDelivery] = []
    for row in rows:
        if len(chosen) == limit:
            break
        if per_endpoint is not None and taken.get(row.endpoint_id, 0) >= per_endpoint:
            continue
        taken[row.endpoint_id] = taken.get(row.endpoint_id, 0) + 1
        chosen.append(row)
    return chosen


def pick_fairly(rows: Sequence[DueDelivery], busy: Mapping[uuid.UUID, int]) -> list[DueDelivery]:
    """`rows` (each endpoint's in due order) in the order a claim serves them: by how many of
    its endpoint's jobs would be ahead of each (those held, then its earlier rows), so the
    endpoint holding fewest goes first; then as given. claim_due orders its picks alike."""
    ahead: dict[uuid.UUID, int] = dict(busy)
    keyed = []
    for index, row in enumerate(rows):
        position = ahead.get(row.endpoint_id, 0)
        ahead[row.endpoint_id] = position + 1
        keyed.append((position, index, row))
    return [row for _, _, row in sorted(keyed, key=lambda k: (k[0], k[1]))]


def _job(
    row: DueDelivery,
    event: EventSnapshot,
    endpoint: WebhookEndpoint,
    secrets: tuple[SecretBytes, ...],
    *,
    now: datetime,
) -> Job:
    msg_id = envelope_id(event.event_id)
    body = body_of(event)
    return Job(
        delivery_id=row.id,
        endpoint_id=endpoint.id,
        url=endpoint.url,
        msg_id=msg_id,
        body=body,
        secrets=secrets,
        event_at=event.created_at,
        lease_until=now,  # set by claim
    )


def body_of(event: EventSnapshot) -> bytes:
    """The request body of an event: its envelope as compact JSON (ASCII only). The data is
    parsed from its stored text here, not by the ORM (an EventRow per delivery was most of
    a claim's Python after the statements; docs/performance.md); splicing the stored text in
    unparsed, when a scan shows json.dumps would write it alike, measured slower (~37 µs for
    a confirmed transaction's ~1 KB) than this parse and dump (~16 µs)."""
    data = jsondepth.loads(event.data)
    return json.dumps(
        envelope(event._replace(data=data)), separators=(",", ":"), default=str
    ).encode()


async def prune(session: AsyncSession, *, before: datetime, limit: int) -> int:
    """Forget finished deliveries older than `before` (the events' retention), a batch."""
    return await repository.prune_finished(session, before=before, limit=limit)
