"""Routes of the chain registry."""

from fastapi import APIRouter, status

from chainflow.api.deps import AdminKey, ProbeDep, ReadKey, SessionmakerDep
from chainflow.api.responses import problem_responses
from chainflow.core.fields import ChainId
from chainflow.domain.chains import service
from chainflow.domain.chains.schemas import ChainCreate, ChainList, ChainRead, ChainUpdate
from chainflow.infra.db.uow import unit_of_work

router = APIRouter(prefix="/v1/chains", tags=["chains"])


@router.get("", responses=problem_responses(401, 403))
async def list_chains(sessionmaker: SessionmakerDep, _key: ReadKey) -> ChainList:
    """List every chain in the registry."""
    async with unit_of_work(sessionmaker) as session:
        return ChainList(
            items=[ChainRead.of(chain) for chain in await service.list_chains(session)]
        )


@router.get("/{chain_id}", responses=problem_responses(401, 403, 404))
async def get_chain(chain_id: ChainId, sessionmaker: SessionmakerDep, _key: ReadKey) -> ChainRead:
    """Get one chain."""
    async with unit_of_work(sessionmaker) as session:
        return ChainRead.of(await service.get_chain(session, chain_id))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 409, 422),
)
async def create_chain(
    body: ChainCreate, sessionmaker: SessionmakerDep, probe: ProbeDep, _key: AdminKey
) -> ChainRead:
    """Add a chain. Every RPC URL must answer `eth_chainId` with `chain_id`."""
    async with unit_of_work(sessionmaker) as session:
        return ChainRead.of(await service.create_chain(session, body, probe=probe))


@router.patch("/{chain_id}", responses=problem_responses(401, 403, 404, 422))
async def update_chain(
    chain_id: ChainId,
    body: ChainUpdate,
    sessionmaker: SessionmakerDep,
    probe: ProbeDep,
    _key: AdminKey,
) -> ChainRead:
    """Change a chain. New RPC URLs, or enabling the chain, re-verify every URL."""
    async with unit_of_work(sessionmaker) as session:
        return ChainRead.of(await service.update_chain(session, chain_id, body, probe=probe))
