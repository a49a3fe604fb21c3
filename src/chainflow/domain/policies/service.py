"""Use cases of spending policies: put a new version, read the current one or its history."""

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.clock import utcnow
from chainflow.core.errors import NotFound
from chainflow.core.types import WalletId
from chainflow.domain.policies import repository
from chainflow.domain.policies.models import WalletPolicy, WalletPolicyVersion
from chainflow.domain.policies.schemas import PolicyRead, PolicyRules


class PolicyNotFound(NotFound):
    code = "policy_not_found"


async def put_policy(
    session: AsyncSession, wallet_id: WalletId, rules: PolicyRules, *, key_id: uuid.UUID | None
) -> PolicyRead:
    """Make `rules` the wallet's policy, as a new version (earlier ones are kept). Requests
    admitted after this commits are checked against it."""
    wallet = await repository.lock_wallet(session, wallet_id)
    if wallet is None:
        raise PolicyNotFound(f"wallet {wallet_id} does not exist")
    current = await repository.get_current(session, wallet_id)
    stored, now = rules.stored(), utcnow()
    if current is None:
        current = WalletPolicy(wallet_id=wallet_id, version=1, rules=stored, updated_at=now)
        session.add(current)
    else:
        current.version, current.rules, current.updated_at = current.version + 1, stored, now
    session.add(
        WalletPolicyVersion(
            wallet_id=wallet_id,
            version=current.version,
            rules=stored,
            created_at=now,
            created_by_key_id=key_id,
        )
    )
    wallet.has_policy = True
    await session.flush()
    return _read(wallet_id, current.version, stored, now)


async def get_policy(
    session: AsyncSession, wallet_id: WalletId, *, version: int | None = None
) -> PolicyRead:
    """The current policy, or one earlier version. Raises: PolicyNotFound."""
    if version is None:
        current = await repository.get_current(session, wallet_id)
        if current is not None:
            return _read(wallet_id, current.version, current.rules, current.updated_at)
    else:
        found = await repository.get_version(session, wallet_id, version)
        if found is not None:
            return _read(wallet_id, found.version, found.rules, found.created_at)
    which = "this version of a policy" if version is not None else "a policy"
    raise PolicyNotFound(f"wallet {wallet_id} has no {which}")


async def read_rules(
    db: repository.Executor, wallet_id: WalletId, *, lock: bool
) -> PolicyRules | None:
    """The rules requests of the wallet are admitted against (`lock`: held by the caller's
    DB transaction until it ends, so concurrent admissions take turns)."""
    stored = await repository.read_rules(db, wallet_id, lock=lock)
    return None if stored is None else PolicyRules.model_validate(stored)


async def lock_policies(db: repository.Executor, wallet_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Lock the policies of these wallets in one order, before admitting requests of several
    of them in one DB transaction (a batch, a schedule pass): see repository.lock_in_order.
    The wallets that have one (their rows locked)."""
    return await repository.lock_in_order(db, wallet_ids)


def _read(wallet_id: WalletId, version: int, rules: dict[str, Any], at: Any) -> PolicyRead:
    return PolicyRead(
        wallet_id=wallet_id, version=version, updated_at=at, rules=PolicyRules.model_validate(rules)
    )
