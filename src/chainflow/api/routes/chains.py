"""Routes of the chain registry."""

from fastapi import APIRouter, Request, status

from chainflow.api.deps import AdminKey, ProbeDep, ReadKey, SessionmakerDep, actor
from chainflow.api.responses import problem_responses
from chainflow.core.fields import ChainId
from chainflow.domain.apikeys.restrictions import restrictions_of
from chainflow.domain.audit import service as audit
from chainflow.domain.chains import service
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
