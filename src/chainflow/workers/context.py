"""Build the engine a worker process runs: sessions, RPC clients per chain, the master key."""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.crashpoints import Crasher
from chainflow.core.settings import Settings
from chainflow.domain.chains import service as chains
from chainflow.domain.transactions.config import EngineConfig
from chainflow.domain.transactions.node import ChainRpc
from chainflow.infra.db.custody_lock import hold_custody_lock
from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.metrics import watch_pool
from chainflow.infra.net.urlguard import UrlGuard
from chainflow.infra.rpc.client import new_http_session
from chainflow.infra.rpc.endpoints import BreakerSettings, EndpointPool
from chainflow.infra.signing import aws_kms, pkcs11
from chainflow.infra.signing.master_source import load_master_key
from chainflow.infra.signing.type2 import load_eth_account
from chainflow.workers.engine import Engine, Ports, ScheduleConfig
from chainflow.workers.outbox import OutboxConfig
from chainflow.workers.webhooks import WebhookPorts, delivery_config, new_webhook_http


def engine_config(settings: Settings) -> EngineConfig:
    """Engine knobs from the CHAINFLOW_* settings."""
    return EngineConfig(
        max_in_flight_per_lane=settings.max_in_flight_per_lane,
        batch_size=min(settings.max_in_flight_per_lane, 256),
        gas_buffer_percent=settings.gas_buffer_percent,
        min_tip_wei=settings.min_tip_wei,
        stuck_after_blocks=settings.stuck_after_blocks,
        stuck_after_s=settings.stuck_after_s,
        resend_after_s=settings.resend_after_s,
        foreign_nonce_grace_s=settings.foreign_nonce_grace_s,
        stranded_after_s=settings.stranded_after_s,
        stranded_held_after_s=settings.stranded_held_after_s,
        bump_percent=str(settings.bump_percent),
        fee_cap_wait_s=settings.fee_cap_wait_s,
    )


@dataclass
class ChainRegistry:
    """Keeps an engine's RPC pools in step with the chain registry in the database."""

    settings: Settings
    http: aiohttp.ClientSession
    chain_ids: Sequence[int] | None = None
    _urls: dict[int, list[str]] = field(default_factory=dict)

    async def sync(
        self, sessionmaker: async_sessionmaker[AsyncSession], rpc: dict[int, ChainRpc]
    ) -> list[int]:
        """Add pools for newly enabled chains and rebuild those whose URLs changed; return the
        chain ids that are new to `rpc`. A disabled chain keeps its pool: its requests in
        flight are still tracked to the end."""
        async with unit_of_work(sessionmaker) as session:
            known = [c for c in await chains.list_chains(session) if c.enabled and c.rpc_urls]
        added: list[int] = []
        for chain in known:
            if self.chain_ids is not None and chain.chain_id not in self.chain_ids:
                continue
            if self._urls.get(chain.chain_id) == chain.rpc_urls:
                continue
            if chain.chain_id not in rpc:
                added.append(chain.chain_id)
            self._urls[chain.chain_id] = chain.rpc_urls
            rpc[chain.chain_id] = EndpointPool(
                self.http,
                chain_id=chain.chain_id,
                urls=chain.rpc_urls,
                timeout_s=self.settings.rpc_timeout_s,
                max_response_bytes=self.settings.rpc_max_response_bytes,
                breaker=BreakerSettings(open_s=self.settings.rpc_breaker_open_s),
            )
        return added


@asynccontextmanager
async def open_engine(
    settings: Settings,
    *,
    chain_ids: Sequence[int] | None = None,
    config: EngineConfig | None = None,
) -> AsyncIterator[Engine]:
    """An Engine over every enabled chain (or the given ones), closed on exit."""
    master = load_master_key(settings, allow_generate=settings.is_embedded)
    # No pre-ping: a round that meets a dead connection fails and the next one retries.
    db = create_engine(settings.resolved_database_url, pre_ping=False)
    watch_pool(db, "engine")
    guard = UrlGuard(allow_private=settings.rpc_allow_private_urls)
    http = new_http_session(guard=guard, connections=128)
    webhook_http = new_webhook_http(settings)
    pkcs11_config = pkcs11.config_from(settings)
    token = pkcs11.Pkcs11Token(pkcs11_config) if pkcs11_config else None
    try:
        sessionmaker = create_sessionmaker(db)
        registry = ChainRegistry(settings, http, chain_ids)
        rpc: dict[int, ChainRpc] = {}
        await registry.sync(sessionmaker, rpc)
        # Held for the engine's life: no master-key rotation while it holds the key.
        async with hold_custody_lock(db, exclusive=False):
            ports = Ports(
                sessionmaker=sessionmaker,
                rpc=rpc,
                master_key=master,
                config=config or engine_config(settings),
                crasher=Crasher.from_spec(settings.test_crash_at),
                refresh_chains=lambda: registry.sync(sessionmaker, rpc),
                pkcs11=token,
                webhooks=WebhookPorts(
                    sessionmaker=sessionmaker,
                    http=webhook_http,
                    config=delivery_config(settings, master),
                    concurrency=settings.webhook_concurrency,
                    poll_s=settings.worker_poll_s,
                    retention_days=settings.event_retention_days,
                ),
                outbox=OutboxConfig(
                    poll_s=settings.event_poll_s, retention_days=settings.event_retention_days
                ),
                aws_kms=aws_kms.AwsKms(aws_kms.config_from(settings)),
                schedules=ScheduleConfig(
                    poll_s=settings.schedule_poll_s,
                    misfire_grace_s=settings.schedule_misfire_grace_s,
                ),
            )
            # Signing's serializers, once, before any drain holds a lane's lock (after the
            # database steps: they ran ~0.5 s later when this came first).
            load_eth_account()
            engine = Engine.start(ports)
            try:
                yield engine
            finally:
                await engine.stop()
    finally:
        await http.close()
        await webhook_http.close()
        await db.dispose()
        if token is not None:
            await token.aclose()
