"""Routes of the chain registry."""

import asyncio
import time

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, Field

from chainflow.api.chain_watch import ChainWatch
from chainflow.api.deps import AdminKey, ProbeDep, ReadKey, SessionmakerDep, actor
from chainflow.api.responses import problem_responses
from chainflow.core.fields import ChainId
from chainflow.core.urls import redact_url
from chainflow.domain.apikeys.restrictions import restrictions_of
from chainflow.domain.audit import service as audit
from chainflow.domain.chains import service
from chainflow.domain.chains.models import Chain
from chainflow.domain.chains.schemas import ChainCreate, ChainList, ChainRead, ChainUpdate
from chainflow.infra.db.uow import unit_of_work

router = APIRouter(prefix="/v1/chains", tags=["chains"])


@router.get("", responses=problem_responses(401, 403))
async def list_chains(sessionmaker: SessionmakerDep, key: ReadKey) -> ChainList:
    """List every chain in the registry (a key limited to some chains: those)."""
    allowed = restrictions_of(key).chain_ids
    async with unit_of_work(sessionmaker) as session:
        chains = await service.list_chains(session)
        return ChainList(
            items=[
                ChainRead.of(chain)
                for chain in chains
                if allowed is None or chain.chain_id in allowed
            ]
        )


class EndpointStatus(BaseModel):
    url: str = Field(description="scheme, host and port only (a path may hold a provider key)")
    healthy: bool | None = Field(description="answered the latest block; null: not probed")
    latency_ms: float | None
    head_block: int | None
    error: str | None = Field(description="a stable code (`rpc_unreachable`, `rpc_error`, …)")


class ChainStatus(BaseModel):
    chain_id: int
    name: str
    native_symbol: str
    enabled: bool
    confirmations: int
    head_block: int | None = Field(description="highest head any endpoint answered")
    head_at: float | None = Field(description="that block's timestamp, unix seconds")
    head_age_s: float | None = Field(description="now minus head_at")
    read_at: float | None = Field(description="when this API process read it, unix seconds")
    endpoints: list[EndpointStatus]


class ChainStatusList(BaseModel):
    items: list[ChainStatus]


@router.get("/status", responses=problem_responses(401, 403))
async def chains_status(
    request: Request, sessionmaker: SessionmakerDep, key: ReadKey
) -> ChainStatusList:
    """Every chain (a key limited to some chains: those) with its head and the health of each
    RPC endpoint. Enabled chains are read by this API process at most once per
    CHAINFLOW_CONSOLE_CHAIN_READ_S, whatever the request rate; disabled ones are not probed."""
    allowed = restrictions_of(key).chain_ids
    async with unit_of_work(sessionmaker) as session:
        registry = await service.list_chains(session)
    watch: ChainWatch = request.app.state.chain_watch
    watch.forget({c.chain_id for c in registry if c.enabled})  # every key's chains stay cached
    shown = [c for c in registry if allowed is None or c.chain_id in allowed]
    items = await asyncio.gather(*(_status_of(watch, chain) for chain in shown))
    return ChainStatusList(items=list(items))


async def _status_of(watch: ChainWatch, chain: Chain) -> ChainStatus:
    status = ChainStatus(
        chain_id=chain.chain_id,
        name=chain.name,
        native_symbol=chain.native_symbol,
        enabled=chain.enabled,
        confirmations=chain.confirmations,
        head_block=None,
        head_at=None,
        head_age_s=None,
        read_at=None,
        endpoints=[
            EndpointStatus(
                url=redact_url(url), healthy=None, latency_ms=None, head_block=None, error=None
            )
            for url in chain.rpc_urls
        ],
    )
    if not chain.enabled or not chain.rpc_urls:
        return status
    head = await watch.head(chain.chain_id, chain.rpc_urls)
    status.head_block, status.head_at, status.read_at = head.head_block, head.head_at, head.read_at
    if head.head_at is not None:
        status.head_age_s = max(0.0, round(time.time() - head.head_at, 1))
    status.endpoints = [EndpointStatus(**vars(endpoint)) for endpoint in head.endpoints]
    return status


@router.get("/{chain_id}", responses=problem_responses(401, 403, 404))
async def get_chain(chain_id: ChainId, sessionmaker: SessionmakerDep, key: ReadKey) -> ChainRead:
    """Get one chain."""
    restrictions_of(key).check_chain(chain_id)
    async with unit_of_work(sessionmaker) as session:
        return ChainRead.of(await service.get_chain(session, chain_id))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 409, 422),
)
async def create_chain(
    request: Request,
    body: ChainCreate,
    sessionmaker: SessionmakerDep,
    probe: ProbeDep,
    key: AdminKey,
) -> ChainRead:
    """Add a chain. Every RPC URL must answer `eth_chainId` with `chain_id`."""
    restrictions_of(key).check_unrestricted("add chains")
    async with unit_of_work(sessionmaker) as session:
        chain = await service.create_chain(session, body, probe=probe)
        audit.record(
            session,
            actor(request, key),
            "chain.created",
            resource="chain",
            resource_id=chain.chain_id,
        )
        return ChainRead.of(chain)


@router.patch("/{chain_id}", responses=problem_responses(401, 403, 404, 422))
async def update_chain(
    chain_id: ChainId,
    body: ChainUpdate,
    sessionmaker: SessionmakerDep,
    probe: ProbeDep,
    key: AdminKey,
    request: Request,
) -> ChainRead:
    """Change a chain. New RPC URLs, or enabling the chain, re-verify every URL."""
    restrictions_of(key).check_unrestricted("change chains")
    async with unit_of_work(sessionmaker) as session:
        chain = await service.update_chain(session, chain_id, body, probe=probe)
        audit.record(
            session, actor(request, key), "chain.updated", resource="chain", resource_id=chain_id
        )
        return ChainRead.of(chain)
