"""The webhook loop of a worker: fan events out, claim due deliveries, send them at once.

Sends run as tasks, at most `concurrency` at a time and at most half of them to one endpoint
(each endpoint's connections are kept alive and reused by the next of its sends); the loop
does not wait for them, so a slow receiver holds its slots for up to its timeout while the
other endpoints go on. A turn claims up to HELD_PER_SLOT jobs per slot, so that a burst is
sent from one claim rather than one claim per slot's worth, one endpoint holding at most its
share of them (held_cap) and each claim serving the endpoint held least first (delivery.claim),
so that slow or backlogged endpoints never take all of them; a job waiting for its endpoint's
slot has a lease longer by a timeout per wave of sends ahead of it, and one that would still
start too late is given back unsent. A turn commits the finished sends' outcomes in a
transaction of their own (a failing fan-out or claim never undoes them), then fans out and
claims in another.
"""

import asyncio
import contextlib
import math
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.clock import utcnow
from chainflow.core.logging import get_logger, is_worth_logging
from chainflow.core.schedule import parse_retry_schedule
from chainflow.core.settings import Settings
from chainflow.domain.events.wakeups import sequenced
from chainflow.domain.webhooks import delivery, service
from chainflow.domain.webhooks.delivery import DeliveryConfig, Job, Outcome
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.net.urlguard import UrlGuard
from chainflow.infra.signing.keystore import MasterKey
from chainflow.workers.waiting import wait_any

log = get_logger(__name__)
_ENDPOINTS_READ_S = 0.5
# Jobs a process holds per send slot: 8 claims a 3,200-event burst to one endpoint in 25
# turns, not 200; a job never waits more than 7 of its endpoint's rounds of sends (its lease
# a timeout longer per round). At 4, one endpoint got at most 64 jobs a turn from a worker,
# 256 a second at turns 250 ms apart: below a busy cluster's rate, so deliveries trailed and
# each turn's statements were paid for every 64 deliveries; at 8, 128 (docs/performance.md
# item 29: the loop's CPU per delivery -17 %).
HELD_PER_SLOT = 8


@dataclass(frozen=True)
class WebhookPorts:
    sessionmaker: async_sessionmaker[AsyncSession]
    http: aiohttp.ClientSession
    config: DeliveryConfig
    concurrency: int = 32
    poll_s: float = 0.1
    # Finished deliveries live as long as events (CHAINFLOW_EVENT_RETENTION_DAYS).
    retention_days: float = 30.0
    prune_every_s: float = 60.0
    # Turns are at least this far apart: outcomes and events gather, and a turn (two
    # transactions, ~12 statements, ~2-3 ms of CPU in the worker and the database) is paid
    # for once per batch, not once per send or sequenced event. At 100 ms the turns of two
    # workers were ~0.1 ms of CPU per delivery at 300 tx/s; 250 ms adds at most that to lags
    # measured in seconds (bench/webhooks.py), and a worker's claims (up to
    # concurrency * HELD_PER_SLOT each) still carry 500 deliveries a second.
    min_gap_s: float = 0.25
    # Fan-out runs in a turn after this process sequenced events (a `sequenced` wake-up),
    # after a fan-out that queued deliveries or left events behind (a batch's limit, endpoints
    # another worker held: delivery.FanOut.behind), and at least this often (events
    # sequenced by another process, which fans them out itself on its own wake-up); not every
    # turn: its statements were a fifth of an idle turn's (docs/performance.md).
    fanout_every_s: float = 1.0


def delivery_config(settings: Settings, master: MasterKey) -> DeliveryConfig:
    return DeliveryConfig(
        master=master,
        retry_schedule=parse_retry_schedule(settings.webhook_retry_schedule),
        disable_after_s=settings.webhook_disable_after_s,
        timeout_s=settings.webhook_timeout_s,
    )


def new_webhook_http(settings: Settings) -> aiohttp.ClientSession:
    """The client of deliveries: every address checked right before its socket opens (the
    resolved address is the one connected to, so a rebinding name cannot slip through), no
    proxy from the environment, no cookies kept."""
    guard = UrlGuard(allow_private=settings.webhook_allow_private_urls)
    connector = aiohttp.TCPConnector(
        limit=settings.webhook_concurrency, socket_factory=guard.socket_factory
    )
    return aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
    )


@dataclass
class _Loop:
    ports: WebhookPorts
    stop: asyncio.Event
    # Jobs held (waiting for a slot, or being sent), with the endpoint each one goes to.
    in_flight: dict["asyncio.Task[Outcome]", uuid.UUID] = field(default_factory=dict)
    # How many of `in_flight` go to each endpoint (a finished send looked its endpoint up
    # among every held job's: up to 128 UUID comparisons a delivery).
    held: Counter[uuid.UUID] = field(default_factory=Counter)
    done: list[Outcome] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    endpoints: int = 0  # how many endpoints are enabled, as read at `endpoints_read_at`
    endpoints_read_at: float = -math.inf
    gates: dict[uuid.UUID, asyncio.Semaphore] = field(default_factory=dict)
    slots: asyncio.Semaphore = field(init=False)
    fan_out_due: bool = True  # events may be waiting to be fanned out
    fanned_at: float = -math.inf  # time.monotonic() of the last fan-out

    def sequenced(self) -> None:
        """This process gave events their cursors: fan them out next turn."""
        self.fan_out_due = True
        self.wake.set()

    def __post_init__(self) -> None:
        self.slots = asyncio.Semaphore(self.ports.concurrency)

    @property
    def per_endpoint(self) -> int:
        return max(1, self.ports.concurrency // 2)

    @property
    def held_cap(self) -> int:
        """How many jobs one endpoint may hold: its slots' worth (HELD_PER_SLOT each), and no
        more than the held budget shared by the endpoints holding jobs plus one still to come,
        so that room is left for an endpoint not yet served (two slow endpoints at half the
        budget each kept every other one waiting until their backlogs drained). Counted
        before a claim: endpoints the claim itself takes are not counted (holding nothing,
        one claim may give two backlogged endpoints half the budget each; a third one's job
        then waits for one of theirs to finish, and is claimed first). With one endpoint busy
        its cap is its slots' worth, as before."""
        budget = self.ports.concurrency * HELD_PER_SLOT
        return min(self.per_endpoint * HELD_PER_SLOT, max(1, budget // (len(self.held) + 1)))

    async def turn(self) -> bool:
        """Record what finished, fan out, claim free slots; True if anything happened."""
        # Read every turn (cached for _ENDPOINTS_READ_S), busy or not: the count bounds a
        # claim's locks (delivery._lock_limit), and an endpoint created while another keeps
        # this process busy must be counted within that time.
        any_endpoint = await self._any_endpoint()
        if not (self.done or self.in_flight or any_endpoint):
            return False  # nowhere to deliver: no database work but the cached check
        ports, now = self.ports, utcnow()
        outcomes, self.done = self.done, []
        try:
            # Outcomes commit on their own: a fan-out or claim that keeps failing must not
            # roll them back turn after turn (delivered events sent again after each lease).
            if outcomes:
                async with unit_of_work(ports.sessionmaker) as session:
                    await delivery.record(session, outcomes, ports.config, now=now)
        except BaseException:
            self.done = outcomes + self.done  # recorded next turn (or sent again after the lease)
            raise
        fan = self.fan_out_due or time.monotonic() >= self.fanned_at + ports.fanout_every_s
        fanned = delivery.FanOut(0, behind=False)
        try:
            async with unit_of_work(ports.sessionmaker) as session:
                if fan:
                    self.fan_out_due = False  # a wake-up from here on is for later events
                    self.fanned_at = time.monotonic()
                    fanned = await delivery.fan_out_batch(session, now=now)
                jobs = await delivery.claim(
                    session,
                    ports.config,
                    now=now,
                    limit=ports.concurrency * HELD_PER_SLOT - len(self.in_flight),
                    busy=Counter(self.held),  # a copy: sends finish while it claims
                    per_endpoint=self.held_cap,
                    sends_per_endpoint=self.per_endpoint,
                    enabled_endpoints=self.endpoints,
                )
        except BaseException:
            self.fan_out_due = self.fan_out_due or fan  # rolled back: fanned out again
            raise
        if fanned.queued or fanned.behind:
            self.fan_out_due = True  # more may be behind: looked for next turn
        for job in jobs:
            self._start(job)
        return bool(outcomes or fanned.queued or jobs)

    async def _any_endpoint(self) -> bool:
        """Whether an endpoint is enabled, read again every `_ENDPOINTS_READ_S`: an endpoint
        created or enabled through the API gets its events within about that."""
        if time.monotonic() >= self.endpoints_read_at + _ENDPOINTS_READ_S:
            async with unit_of_work(self.ports.sessionmaker) as session:
                self.endpoints = await service.enabled_endpoints(session)
            self.endpoints_read_at = time.monotonic()
        return self.endpoints > 0

    def _start(self, job: Job) -> None:
        task = asyncio.create_task(self._send(job))
        self.in_flight[task] = job.endpoint_id
        self.held[job.endpoint_id] += 1
        task.add_done_callback(self._finished)

    async def _send(self, job: Job) -> Outcome:
        gate = self.gates.get(job.endpoint_id)
        if gate is None:
            gate = self.gates[job.endpoint_id] = asyncio.Semaphore(self.per_endpoint)
        async with gate, self.slots:
            now = utcnow()
            if self.stop.is_set() or not self.ports.config.may_start(job.lease_until, now=now):
                return delivery.given_back(job, now=now)
            try:
                return await delivery.send(
                    self.ports.http, job, timeout_s=self.ports.config.timeout_s, now=now
                )
            except Exception as exc:  # send records what it can; this is a bug's last net
                log.error(
                    "webhook.send_failed",
                    delivery_id=str(job.delivery_id),
                    error_type=type(exc).__name__,
                )
                return delivery.failed_attempt(job, now=now)

    def _finished(self, task: "asyncio.Task[Outcome]") -> None:
        endpoint_id = self.in_flight.pop(task, None)
        if endpoint_id is not None:
            self.held[endpoint_id] -= 1
            if self.held[endpoint_id] <= 0:
                del self.held[endpoint_id]
                self.gates.pop(endpoint_id, None)  # no job of it held: no gate kept
        if task.cancelled():
            pass  # stopping: its delivery is claimed again after its lease
        elif (exc := task.exception()) is not None:
            # Its delivery goes out again after its lease; said, not dropped without a word.
            # The type alone: a message could carry the endpoint's URL (its secret path).
            log.error("webhook.task_failed", error_type=type(exc).__name__)
        else:
            self.done.append(task.result())
        self.wake.set()


async def run_webhooks(ports: WebhookPorts, stop: asyncio.Event) -> None:
    """Deliver until `stop`; then wait for the sends in flight and record them. The outbox
    loop (workers/outbox.py) gives events their cursors; fan-out reads only those."""
    loop = _Loop(ports, stop)
    unsubscribe = sequenced.subscribe(loop.sequenced)  # new events in this process: fan out now
    try:
        await _deliver(loop, stop)
    finally:
        unsubscribe()
    if loop.in_flight:
        await asyncio.wait(list(loop.in_flight))
    with contextlib.suppress(Exception):  # unrecorded ones are sent again after their lease
        async with unit_of_work(ports.sessionmaker) as session:
            await delivery.record(session, loop.done, ports.config, now=utcnow())


async def _deliver(loop: _Loop, stop: asyncio.Event) -> None:
    ports = loop.ports
    failures = 0
    next_prune = 0.0
    while not stop.is_set():
        loop.wake.clear()
        started = time.monotonic()
        try:
            busy = await loop.turn()
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + ports.prune_every_s
                await _prune(ports)
            failures = 0
        except Exception as exc:  # the database may be away; leases make retries safe
            failures += 1
            if is_worth_logging(failures):
                log.error("webhooks.turn_failed", error=repr(exc)[:300], failures=failures)
            busy = False
        if not busy:
            wait_s = min(ports.poll_s * 2 ** min(failures, 6), 5.0)
            await wait_any(stop, loop.wake, timeout_s=wait_s)
        # Let outcomes and events gather: a turn per finished send or sequenced batch would be
        # a transaction per delivery; a turn per `min_gap_s` records them in batches.
        gap_s = ports.min_gap_s - (time.monotonic() - started)
        if gap_s > 0:
            await wait_any(stop, timeout_s=gap_s)


async def _prune(ports: WebhookPorts, *, batch: int = 1000) -> None:
    before = utcnow() - timedelta(days=ports.retention_days)
    while True:
        async with unit_of_work(ports.sessionmaker) as session:
            count = await delivery.prune(session, before=before, limit=batch)
        if count < batch:
            return
