"""Spending policies at admission (issue 21): the check, and the reservation of the value.

A wallet with a policy has its requests admitted one at a time: the admitting DB transaction
locks the wallet's policy row (FOR UPDATE; on SQLite, BEGIN IMMEDIATE already makes it the one
writer), sums the value its requests on the chain were admitted with in each rolling window,
and inserts the new request before it commits. The request row is the reservation: the next
admission, which waits for the lock, counts it, so concurrent requests cannot overshoot a
limit. A request that ends without executing (failed, cancelled, expired: the one writer of
status changes, transitions.py, writes those) is no longer counted, which releases its value.

A wallet without a policy pays nothing: whether it has one is read with the wallet
(`wallets.has_policy`, in the admission's one read of chain, wallet and lane).
"""

from collections.abc import Iterable
from datetime import timedelta

from chainflow.core.addresses import parse_wallet_ref
from chainflow.core.clock import utcnow
from chainflow.core.errors import Forbidden, InvalidInput
from chainflow.core.types import WalletId
from chainflow.domain.chains.errors import UnknownChain
from chainflow.domain.policies import rules as policy
from chainflow.domain.policies import service as policies
from chainflow.domain.policies.schemas import PolicyRules, ValueLimit
from chainflow.domain.policies.schemas import PolicyVerdict as Verdict
from chainflow.domain.transactions.calldata import calldata_of
from chainflow.domain.transactions.errors import UnknownWallet, WalletMismatch
from chainflow.domain.transactions.repository import intake
from chainflow.domain.transactions.schemas import TxCreate


class PolicyDenied(Forbidden):
    code = "policy_denied"
    title = "Denied by the wallet's spending policy"


class Ledger:
    """The policies locked and the value counted within one admitting DB transaction: a
    batch's items of one wallet and chain add up."""

    def __init__(self, db: intake.Executor, *, lock: bool) -> None:
        self._db = db
        self._lock = lock
        self._rules: dict[WalletId, PolicyRules | None] = {}
        self._spent: dict[tuple[WalletId, int, int], int] = {}

    async def lock_first(self, wallet_ids: Iterable[WalletId]) -> None:
        """Lock these wallets' policies at once, in id order, before admitting requests of
        several wallets in the caller's own order (a batch, a schedule pass): two such
        admissions locking them one by one in opposite orders deadlocked (audit). A wallet
        among them without a policy now is admitted as one without a policy, even if one
        is committed before its request: locking that row later, out of id order, could
        deadlock again (review); the policy counts the request once both have committed,
        as it counts requests admitted before it."""
        if self._lock:
            ids = set(wallet_ids)
            locked = await policies.lock_policies(self._db, ids)
            for wallet_id in ids - locked:
                self._rules.setdefault(WalletId(wallet_id), None)

    async def admit(self, wallet_id: WalletId, draft: policy.Draft) -> int | None:
        """Count the draft against the wallet's policy; the max_fee_per_gas to store with
        it. Raises: PolicyDenied naming the rule and its limit."""
        verdict = await self.evaluate(wallet_id, draft)
        if isinstance(verdict, policy.Denial):
            extra = {"limit": verdict.limit} if verdict.limit is not None else {}
            if verdict.window_s is not None:
                extra["window_s"] = str(verdict.window_s)
            raise PolicyDenied(verdict.detail, rule=verdict.rule, **extra)
        # Once per window: limits of one window (one on every chain, one on this chain)
        # share its count, which the draft adds to once.
        for window_s in {limit.window_s for limit in self._limits(wallet_id, draft.chain_id)}:
            self._spent[(wallet_id, draft.chain_id, window_s)] += draft.value_wei
        return verdict.fee_cap_wei

    async def evaluate(
        self, wallet_id: WalletId, draft: policy.Draft
    ) -> policy.Denial | policy.Passed:
        """The verdict on the draft, counting nothing."""
        rules = await self._rules_of(wallet_id)
        if rules is None:
            return policy.Passed(draft.max_fee_per_gas_wei)
        passed = policy.check(rules, draft)
        if isinstance(passed, policy.Denial):
            return passed
        limits = self._limits(wallet_id, draft.chain_id)
        spent = {
            limit.window_s: await self._spent_in(wallet_id, draft.chain_id, limit.window_s)
            for limit in limits
        }
        return policy.check_limits(limits, draft.value_wei, spent) or passed

    async def _rules_of(self, wallet_id: WalletId) -> PolicyRules | None:
        if wallet_id not in self._rules:
            self._rules[wallet_id] = await policies.read_rules(self._db, wallet_id, lock=self._lock)
        return self._rules[wallet_id]

    def _limits(self, wallet_id: WalletId, chain_id: int) -> list[ValueLimit]:
        rules = self._rules.get(wallet_id)
        return [] if rules is None else policy.limits_for(rules, chain_id)

    async def _spent_in(self, wallet_id: WalletId, chain_id: int, window_s: int) -> int:
        key = (wallet_id, chain_id, window_s)
        if key not in self._spent:
            since = utcnow() - timedelta(seconds=window_s)
            self._spent[key] = await intake.value_since(self._db, wallet_id, chain_id, since)
        return self._spent[key]


def draft_of(body: TxCreate, target: intake.Target, data: bytes | InvalidInput) -> policy.Draft:
    if isinstance(data, InvalidInput):
        raise data
    return policy.Draft(
        chain_id=target.chain_id,
        to=body.to,
        value_wei=body.value,
        data=data,
        gas_limit=body.gas_limit,
        max_fee_per_gas_wei=body.max_fee_per_gas,
        max_priority_fee_per_gas_wei=body.max_priority_fee_per_gas,
        chain_fee_cap_wei=target.max_fee_per_gas_cap,
    )


async def evaluate_policy(db: intake.Executor, wallet_id: WalletId, body: TxCreate) -> Verdict:
    """What the wallet's spending policy would answer to `body` now, admitting nothing and
    taking no lock: the same rules and the same count of value as `submit`. `body.wallet`
    must name the wallet (by id or address). Raises: UnknownChain, UnknownWallet."""
    target = await intake.find_target(db, body.chain_id, str(wallet_id))
    if target is None:
        raise UnknownChain(f"chain {body.chain_id} is not in the registry")
    if target.wallet_id is None or target.wallet_address is None:
        raise UnknownWallet(f"wallet {wallet_id} does not exist")
    named = parse_wallet_ref(body.wallet)
    if named not in (target.wallet_id, target.wallet_address):
        raise WalletMismatch("the body's wallet is not the wallet of the path")
    (data,) = await calldata_of([body])
    verdict = await Ledger(db, lock=False).evaluate(target.wallet_id, draft_of(body, target, data))
    if isinstance(verdict, policy.Denial):
        return Verdict(allowed=False, rule=verdict.rule, detail=verdict.detail)
    return Verdict(allowed=True)
