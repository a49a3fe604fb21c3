"""The FastAPI application: create_app() and a lifespan that builds Resources."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis

from chainflow import __version__
from chainflow.api import problems
from chainflow.api.auth_cache import KeyCache
from chainflow.api.chain_watch import ChainWatch
from chainflow.api.edge import EdgeMiddleware
from chainflow.api.event_hub import EventHub
from chainflow.api.group_commit import GroupCommit
from chainflow.api.metrics_collector import LaneCollector
from chainflow.api.resources import Resources
from chainflow.api.routes import (
    audit,
    chains,
    console,
    events,
    health,
    lanes,
    me,
    metrics,
    policies,
    schedules,
    transactions,
    wallets,
    webhooks,
)
from chainflow.core.logging import get_logger
from chainflow.core.settings import Settings
from chainflow.domain.master_key import check_master_key
from chainflow.domain.transactions.doorbell import Doorbells
from chainflow.infra.db.custody_lock import hold_custody_lock
from chainflow.infra.db.engine import create_engine, create_sessionmaker, warm_pool
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.metrics import watch_pool
from chainflow.infra.net.urlguard import UrlGuard
from chainflow.infra.queue import InProcessJobQueue, JobQueue, RedisJobQueue
from chainflow.infra.ratelimit import LocalRateLimiter, RedisRateLimiter
from chainflow.infra.rpc.client import new_http_session
from chainflow.infra.signing import aws_kms, pkcs11
from chainflow.infra.signing.master_source import load_master_key

log = get_logger(__name__)

DESCRIPTION = """
Chainflow keeps EVM wallets safe and gets their transactions on chain.

Authenticate with `Authorization: Bearer <api key>` (create one with
`chainflow apikey create --scopes admin`). Errors are RFC 9457 `application/problem+json`
with a stable `code`. Amounts are wei as decimal strings; addresses are accepted all lower
case, all upper case or EIP-55 checksummed (a wrong checksum is refused, never repaired) and
returned checksummed. Bodies are strictly typed: a number is never read from a string, a
boolean or a float, nor a boolean from a number.
"""


# Kept open, none beyond: with 10 and 10 more under bursts, 64 requests in flight opened and
# closed ~400 connections in a 3,200-request run, each a new PostgreSQL backend (~5 ms of its
# CPU, half of PostgreSQL's CPU per transaction; docs/performance.md). The most connections
# is the same 20.
_POOL_SIZE = 20
# Opened at start; the others as a burst needs them, then kept (a test suite starts many apps).
_WARM = 10


def _own_queue(settings: Settings) -> JobQueue:
    # Without Redis the API rings an in-process queue: `chainflow dev` injects the one its
    # workers consume; a lone `chainflow api` has none, and the workers' sweep finds the rows.
    return RedisJobQueue(settings.redis_url) if settings.redis_url else InProcessJobQueue()


@asynccontextmanager
async def open_resources(
    settings: Settings, *, queue: JobQueue | None = None
) -> AsyncIterator[Resources]:
    """Build every resource of an API process and close them on exit."""
    master_key = load_master_key(settings, allow_generate=settings.is_embedded)
    # No ping per checkout (a round trip per request: ~7% of the API's CPU, a third of
    # PostgreSQL's): after a database restart the first request to meet a dead connection is
    # refused 503 `database_unavailable` (retryable, with the same Idempotency-Key) and the
    # pool is recycled (tests/chaos/test_infrastructure.py).
    engine = create_engine(
        settings.resolved_database_url, pool_size=_POOL_SIZE, pre_ping=False, overflow=0
    )
    watch_pool(engine, "api")
    http = new_http_session(guard=UrlGuard(allow_private=settings.rpc_allow_private_urls))
    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
    own_queue = queue or _own_queue(settings)
    pkcs11_config = pkcs11.config_from(settings)
    token = pkcs11.Pkcs11Token(pkcs11_config) if pkcs11_config else None
    try:
        sessionmaker = create_sessionmaker(engine)
        # Held for the process's life: no master-key rotation while it holds the key.
        async with hold_custody_lock(engine, exclusive=False):
            async with unit_of_work(sessionmaker) as session:
                await check_master_key(session, master=master_key)
            await warm_pool(engine, _WARM)
            doorbells = Doorbells(own_queue)
            group = None
            if engine.dialect.name == "postgresql" and settings.api_group_commit_ms > 0:
                # Its own connection, outside the pool: the callers waiting for their group
                # hold pooled connections, and must not starve the one that stores it.
                group = GroupCommit(
                    create_engine(settings.resolved_database_url, pool_size=1, pre_ping=False),
                    settings.api_group_commit_ms / 1000,
                )
            yield Resources(
                settings,
                engine,
                sessionmaker,
                http,
                master_key,
                redis,
                KeyCache(settings.api_key_cache_s),
                doorbells,
                token,
                aws_kms.AwsKms(aws_kms.config_from(settings)),
                limiter=RedisRateLimiter(redis) if redis is not None else LocalRateLimiter(),
                group_commit=group,
            )
            if group is not None:
                await group.close()  # the last group, before the engine goes
            await doorbells.settle()  # the last rings, before the queue closes
    finally:
        if queue is None:
            await own_queue.close()
        await http.close()
        if redis is not None:
            await redis.aclose()
        await engine.dispose()
        if token is not None:
            await token.aclose()


def create_app(settings: Settings, *, queue: JobQueue | None = None) -> FastAPI:
    """The API application for these settings (`queue`: share the in-process doorbells)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings, queue=queue) as resources:
            app.state.resources = resources
            app.state.chain_watch = ChainWatch(
                resources.http,
                every_s=settings.console_chain_read_s,
                max_response_bytes=settings.rpc_max_response_bytes,
            )
            app.state.event_hub = EventHub(
                resources.sessionmaker,
                poll_s=settings.event_poll_s,
                max_streams=settings.event_stream_max_clients,
            )
            try:
                yield
            finally:
                await app.state.event_hub.close()

    app = FastAPI(
        title="Chainflow",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry spans, metrics and logs: off. No OpenTelemetry SDK is
        # installed, so they never recorded anything, but asking whether a provider was set
        # read the environment three times per request (os.environ, docs/performance.md item
        # 33). Chainflow's observability is its Prometheus metrics and structured logs.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    problems.install(app)
    app.add_middleware(EdgeMiddleware, settings=settings)
    app.state.lane_collector = LaneCollector(settings.metrics_cache_s)
    routers = (
        health.router,
        metrics.router,
        chains.router,
        wallets.router,
        lanes.router,
        policies.router,
        transactions.router,
        events.router,
        webhooks.router,
        schedules.router,
        me.router,
        audit.router,
        console.router,
    )
    for router in routers:
        app.include_router(router)
    transactions.route_submissions_first(app)
    return app
