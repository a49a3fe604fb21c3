"""Routes of wallets' spending policies (issue 21)."""

from typing import Annotated

from fastapi import APIRouter, Query, Request

from chainflow.api.deps import PoliciesKey, ReadKey, SessionmakerDep, actor
from chainflow.api.responses import problem_responses
from chainflow.domain.apikeys.restrictions import restrictions_of
from chainflow.domain.audit import service as audit
from chainflow.domain.policies import service
from chainflow.domain.policies.schemas import PolicyRead, PolicyRules, PolicyVerdict
from chainflow.domain.transactions import spending
from chainflow.domain.transactions.schemas import TxCreate
from chainflow.domain.wallets import service as wallets
from chainflow.infra.db.uow import unit_of_work

router = APIRouter(prefix="/v1/wallets", tags=["policies"])


@router.put("/{wallet_ref}/policy", responses=problem_responses(401, 403, 404, 422))
async def put_policy(
    request: Request,
    wallet_ref: str,
    body: PolicyRules,
    sessionmaker: SessionmakerDep,
    key: PoliciesKey,
) -> PolicyRead:
    """Replace the wallet's spending policy with a new version (earlier ones are kept).
    Requests admitted from then on must pass it; `{}` restricts nothing. The policy governs the
    wallet on every chain: a key limited to some chains is refused (403 `key_restricted`)."""
    restrictions_of(key).check_every_chain("replace a wallet's spending policy")
    async with unit_of_work(sessionmaker) as session:
        wallet = await wallets.get_wallet(
            session, wallet_ref, lanes=False, restrictions=restrictions_of(key)
        )
        policy = await service.put_policy(session, wallet.id, body, key_id=key.id)
        audit.record(
            session, actor(request, key), "policy.updated", resource="wallet", resource_id=wallet.id
        )
        return policy


@router.get("/{wallet_ref}/policy", responses=problem_responses(401, 403, 404))
async def get_policy(
    wallet_ref: str,
    sessionmaker: SessionmakerDep,
    key: ReadKey,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> PolicyRead:
    """The wallet's current policy, or an earlier `version`. A key limited to some chains sees
    only the limits of its chains and those of every chain (`chain_id` null), and only of a
    wallet enabled on one of them (403 `key_restricted` otherwise, as GET /v1/wallets/{id})."""
    reach = restrictions_of(key)
    async with unit_of_work(sessionmaker) as session:
        wallet = await wallets.get_visible_wallet(session, wallet_ref, restrictions=reach)
        policy = await service.get_policy(session, wallet.id, version=version)
    if reach.chain_ids is None or policy.rules.limits is None:
        return policy
    limits = [
        limit
        for limit in policy.rules.limits
        if limit.chain_id is None or limit.chain_id in reach.chain_ids
    ]
    return policy.model_copy(update={"rules": policy.rules.model_copy(update={"limits": limits})})


@router.post("/{wallet_ref}/policy/evaluate", responses=problem_responses(401, 403, 404, 422))
async def evaluate_policy(
    wallet_ref: str, body: TxCreate, sessionmaker: SessionmakerDep, key: ReadKey
) -> PolicyVerdict:
    """Would the policy admit this draft (a POST /v1/transactions body for this wallet) now?
    The same rules and rolling counts as admission; nothing is stored or reserved. A chain
    outside the key's is refused (403 `key_restricted`) before anything is read."""
    reach = restrictions_of(key)
    reach.check_chain(body.chain_id)
    async with unit_of_work(sessionmaker) as session:
        wallet = await wallets.get_visible_wallet(session, wallet_ref, restrictions=reach)
        return await spending.evaluate_policy(session, wallet.id, body)
