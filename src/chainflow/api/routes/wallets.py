"""Routes of wallets and their per-chain lanes."""

from typing import Annotated

from fastapi import APIRouter, Query, status

from chainflow.api.deps import ReadKey, ResourcesDep, SessionmakerDep, WalletsKey
from chainflow.api.responses import problem_responses
from chainflow.core.fields import ChainId
from chainflow.domain.apikeys.service import is_admin
from chainflow.domain.transactions import service as transactions
from chainflow.domain.wallets import lanes, low_balance, service
from chainflow.domain.wallets.schemas import (
    LaneRead,
    LaneSettings,
    WalletCreate,
    WalletList,
    WalletRead,
    WalletUpdate,
)
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import validate_private_key
from chainflow.infra.signing.local import generate_private_key

router = APIRouter(prefix="/v1/wallets", tags=["wallets"])


@router.post(
    "", status_code=status.HTTP_201_CREATED, responses=problem_responses(401, 403, 409, 422)
)
async def create_wallet(
    body: WalletCreate, resources: ResourcesDep, _key: WalletsKey
) -> WalletRead:
    """Import a private key or generate one (sealed at once, never returned), or bind a key
    kept by an HSM / KMS (`signer`) after a test signature recovered to its address."""
    if body.signer is not None:
        async with unit_of_work(resources.sessionmaker) as session:
            wallet = await service.bind_wallet(
                session,
                body.signer.request(),
                pkcs11=resources.pkcs11,
                label=body.label,
                chain_ids=body.chain_ids,
            )
            return WalletRead.of(wallet)
    if body.private_key is not None:
        private_key = validate_private_key(body.private_key.get_secret_value())
    else:
        private_key = generate_private_key()
    async with unit_of_work(resources.sessionmaker) as session:
        wallet = await service.import_wallet(
            session,
            private_key,
            master=resources.master_key,
            label=body.label,
            chain_ids=body.chain_ids,
        )
        return WalletRead.of(wallet)


@router.get("", responses=problem_responses(401, 403, 422))
async def list_wallets(
    sessionmaker: SessionmakerDep,
    _key: ReadKey,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> WalletList:
    """List wallets in creation order, one page at a time."""
    async with unit_of_work(sessionmaker) as session:
        rows, next_cursor = await service.list_wallets(session, limit=limit, cursor=cursor)
        return WalletList(items=[WalletRead.of(w) for w in rows], next_cursor=next_cursor)


@router.get("/{wallet_ref}", responses=problem_responses(401, 403, 404))
async def get_wallet(wallet_ref: str, sessionmaker: SessionmakerDep, _key: ReadKey) -> WalletRead:
    """Get a wallet by id or by address (any case)."""
    async with unit_of_work(sessionmaker) as session:
        return WalletRead.of(await service.get_wallet(session, wallet_ref))


@router.patch("/{wallet_ref}", responses=problem_responses(401, 403, 404, 409, 422))
async def update_wallet(
    wallet_ref: str, body: WalletUpdate, sessionmaker: SessionmakerDep, key: WalletsKey
) -> WalletRead:
    """Change status (active ⇄ paused, → disabled; disabled → active needs admin) or label."""
    async with unit_of_work(sessionmaker) as session:
        wallet = await service.get_wallet(session, wallet_ref)
        changes = body.model_dump(exclude_unset=True)
        await service.update_wallet(session, wallet, changes=changes, is_admin=is_admin(key))
        return WalletRead.of(wallet)


@router.put("/{wallet_ref}/chains/{chain_id}", responses=problem_responses(401, 403, 404, 422))
async def enable_chain(
    wallet_ref: str,
    chain_id: ChainId,
    sessionmaker: SessionmakerDep,
    _key: WalletsKey,
    body: LaneSettings | None = None,
) -> WalletRead:
    """Enable the wallet on a chain (idempotent); with a body, also set the lane's
    `low_balance_wei` threshold (null turns it off)."""
    return await _set_chain(sessionmaker, wallet_ref, chain_id, enabled=True, settings=body)


@router.delete("/{wallet_ref}/chains/{chain_id}", responses=problem_responses(401, 403, 404))
async def disable_chain(
    wallet_ref: str, chain_id: ChainId, sessionmaker: SessionmakerDep, _key: WalletsKey
) -> WalletRead:
    """Disable the wallet on a chain (idempotent); its nonce cursor is kept."""
    return await _set_chain(sessionmaker, wallet_ref, chain_id, enabled=False)


async def _set_chain(
    sessionmaker: SessionmakerDep,
    wallet_ref: str,
    chain_id: int,
    *,
    enabled: bool,
    settings: LaneSettings | None = None,
) -> WalletRead:
    async with unit_of_work(sessionmaker) as session:
        wallet = await service.get_wallet(session, wallet_ref)
        lane = await service.set_chain_enabled(session, wallet, chain_id, enabled=enabled)
        if settings is not None and "low_balance_wei" in settings.model_fields_set:
            low_balance.set_threshold(lane, settings.low_balance_wei)
        await session.refresh(wallet, attribute_names=["chains"])
        return WalletRead.of(wallet)


@router.get("/{wallet_ref}/chains/{chain_id}", responses=problem_responses(401, 403, 404))
async def read_lane(
    wallet_ref: str, chain_id: ChainId, resources: ResourcesDep, _key: ReadKey
) -> LaneRead:
    """Lane state: `next_nonce`, the chain's pending nonce, in-flight count and balance."""
    async with unit_of_work(resources.sessionmaker) as session:
        wallet = await service.get_wallet(session, wallet_ref)
        return await lanes.read_lane(
            session,
            wallet,
            chain_id,
            in_flight=await transactions.count_in_flight(session, wallet.id, chain_id),
            http=resources.http,
            timeout_s=resources.settings.rpc_timeout_s,
        )
