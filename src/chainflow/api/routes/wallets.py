"""Routes of wallets and their per-chain lanes."""

from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.api.deps import ReadKey, ResourcesDep, SessionmakerDep, WalletsKey, actor
from chainflow.api.responses import problem_responses
from chainflow.core.fields import ChainId
from chainflow.domain import master_key
from chainflow.domain.apikeys.models import ApiKey
from chainflow.domain.apikeys.restrictions import restrictions_of
from chainflow.domain.apikeys.service import is_admin
from chainflow.domain.audit import service as audit
from chainflow.domain.transactions import service as transactions
from chainflow.domain.wallets import custody, lanes, low_balance, service
from chainflow.domain.wallets.models import Wallet
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
    request: Request, body: WalletCreate, resources: ResourcesDep, key: WalletsKey
) -> WalletRead:
    """Import a private key or generate one (sealed at once, never returned), or bind a key
    kept by an HSM / KMS (`signer`) after a test signature recovered to its address."""
    restrictions_of(key).check_unrestricted("create wallets")
    who = actor(request, key)
    if body.signer is not None:
        async with unit_of_work(resources.sessionmaker) as session:
            wallet = await service.bind_wallet(
                session,
                body.signer.request(),
                pkcs11=resources.pkcs11,
                aws_kms=resources.aws_kms,
                label=body.label,
                chain_ids=body.chain_ids,
            )
            audit.record(session, who, "wallet.bound", resource="wallet", resource_id=wallet.id)
            return WalletRead.of(wallet)
    action = "wallet.imported" if body.private_key is not None else "wallet.generated"
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
            sealed_rows=master_key.foreign_key_ids,
        )
        audit.record(session, who, action, resource="wallet", resource_id=wallet.id)
        return WalletRead.of(wallet)


@router.get("", responses=problem_responses(401, 403, 422))
async def list_wallets(
    sessionmaker: SessionmakerDep,
    key: ReadKey,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> WalletList:
    """List wallets in creation order, one page at a time (a restricted key: its own, and
    only those enabled on one of its chains)."""
    reach = restrictions_of(key)
    async with unit_of_work(sessionmaker) as session:
        rows, next_cursor = await service.list_wallets(
            session, limit=limit, cursor=cursor, restrictions=reach
        )
        return WalletList(items=[WalletRead.of(w, reach) for w in rows], next_cursor=next_cursor)


@router.get("/{wallet_ref}", responses=problem_responses(401, 403, 404))
async def get_wallet(wallet_ref: str, sessionmaker: SessionmakerDep, key: ReadKey) -> WalletRead:
    """Get a wallet by id or by address (any case); a key limited to some chains sees only
    the wallets enabled on one of them (403 `key_restricted` for the others)."""
    reach = restrictions_of(key)
    async with unit_of_work(sessionmaker) as session:
        wallet = await service.get_visible_wallet(session, wallet_ref, restrictions=reach)
        return WalletRead.of(wallet, reach)


@router.patch("/{wallet_ref}", responses=problem_responses(401, 403, 404, 409, 422))
async def update_wallet(
    request: Request,
    wallet_ref: str,
    body: WalletUpdate,
    sessionmaker: SessionmakerDep,
    key: WalletsKey,
) -> WalletRead:
    """Change status (active ⇄ paused, → disabled; disabled → active needs admin) or label.
    Both apply on every chain: a key limited to some chains is refused (403 `key_restricted`)."""
    restrictions_of(key).check_every_chain("change a wallet's status or label")
    async with unit_of_work(sessionmaker) as session:
        wallet = await _reachable(session, wallet_ref, key)
        changes = body.model_dump(exclude_unset=True)
        await service.update_wallet(session, wallet, changes=changes, is_admin=is_admin(key))
        audit.record(
            session, actor(request, key), "wallet.updated", resource="wallet", resource_id=wallet.id
        )
        return WalletRead.of(wallet)


@router.put("/{wallet_ref}/chains/{chain_id}", responses=problem_responses(401, 403, 404, 422))
async def enable_chain(
    request: Request,
    wallet_ref: str,
    chain_id: ChainId,
    sessionmaker: SessionmakerDep,
    key: WalletsKey,
    body: LaneSettings | None = None,
) -> WalletRead:
    """Enable the wallet on a chain (idempotent); with a body, also set the lane's
    `low_balance_wei` threshold (null turns it off)."""
    return await _set_chain(
        request, sessionmaker, wallet_ref, chain_id, key=key, enabled=True, settings=body
    )


@router.delete("/{wallet_ref}/chains/{chain_id}", responses=problem_responses(401, 403, 404))
async def disable_chain(
    request: Request,
    wallet_ref: str,
    chain_id: ChainId,
    sessionmaker: SessionmakerDep,
    key: WalletsKey,
) -> WalletRead:
    """Disable the wallet on a chain (idempotent); its nonce cursor is kept."""
    return await _set_chain(request, sessionmaker, wallet_ref, chain_id, key=key, enabled=False)


async def _reachable(session: AsyncSession, wallet_ref: str, key: ApiKey) -> Wallet:
    """The wallet, if the key may see it (403 `key_restricted` otherwise, existing or not): a
    key limited to some chains reaches only the wallets enabled on one of them, so it can
    neither tell hidden wallets apart nor pull one onto its chain (a wallet-wide change)."""
    return await service.get_visible_wallet(session, wallet_ref, restrictions=restrictions_of(key))


async def _set_chain(
    request: Request,
    sessionmaker: SessionmakerDep,
    wallet_ref: str,
    chain_id: int,
    *,
    key: ApiKey,
    enabled: bool,
    settings: LaneSettings | None = None,
) -> WalletRead:
    restrictions_of(key).check_chain(chain_id)
    async with unit_of_work(sessionmaker) as session:
        wallet = await _reachable(session, wallet_ref, key)
        lane = await service.set_chain_enabled(session, wallet, chain_id, enabled=enabled)
        if settings is not None and "low_balance_wei" in settings.model_fields_set:
            low_balance.set_threshold(lane, settings.low_balance_wei)
        action = "wallet.chain_enabled" if enabled else "wallet.chain_disabled"
        audit.record(
            session,
            actor(request, key),
            action,
            resource="wallet",
            resource_id=f"{wallet.id}/{chain_id}",
        )
        await session.refresh(wallet, attribute_names=["chains"])
        return WalletRead.of(wallet, restrictions_of(key))


@router.get("/{wallet_ref}/chains/{chain_id}", responses=problem_responses(401, 403, 404))
async def read_lane(
    wallet_ref: str, chain_id: ChainId, resources: ResourcesDep, key: ReadKey
) -> LaneRead:
    """Lane state: `next_nonce`, the chain's pending nonce, in-flight count and balance."""
    restrictions_of(key).check_chain(chain_id)
    async with unit_of_work(resources.sessionmaker) as session:
        wallet = await _reachable(session, wallet_ref, key)
        lane = await lanes.read_lane(
            session,
            wallet,
            chain_id,
            in_flight=await transactions.count_in_flight(session, wallet.id, chain_id),
            http=resources.http,
            timeout_s=resources.settings.rpc_timeout_s,
        )
    # After the DB transaction: a KMS probe may take up to 2 s (its answer is kept 5 s).
    health = await custody.signer_health(wallet, pkcs11=resources.pkcs11, aws_kms=resources.aws_kms)
    return lanes.with_signer_health(lane, health)
