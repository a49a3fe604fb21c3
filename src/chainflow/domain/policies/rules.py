"""The rules of a spending policy, applied to one draft request. Pure: the caller reads the
policy and the value already sent, and writes nothing when a rule denies."""

from collections.abc import Mapping
from dataclasses import dataclass

from chainflow.domain.policies.schemas import PolicyRules, ValueLimit

# Rule names, as the denial's `rule` and the evaluate answer show them: the policy's fields.
RECIPIENTS = "allowed_recipients"
SELECTORS = "allowed_selectors"
MAX_VALUE = "max_value_wei_per_tx"
MAX_FEE = "max_fee_per_gas_wei"
MAX_COST = "max_cost_wei"
LIMITS = "limits"


@dataclass(frozen=True)
class Draft:
    """What a policy looks at in a request (addresses checksummed, as stored)."""

    chain_id: int
    to: str
    value_wei: int
    data: bytes
    gas_limit: int | None
    max_fee_per_gas_wei: int | None
    max_priority_fee_per_gas_wei: int | None
    chain_fee_cap_wei: int | None


@dataclass(frozen=True)
class Denial:
    rule: str
    detail: str
    limit: str | None = None
    window_s: int | None = None


@dataclass(frozen=True)
class Passed:
    """The request passes the rules that need no reading; `fee_cap_wei` is the
    max_fee_per_gas to store with it (the policy's cap when the request named none)."""

    fee_cap_wei: int | None


def check(rules: PolicyRules, draft: Draft) -> Denial | Passed:
    """The first rule (other than the rolling limits) that denies the draft, else Passed."""
    denial = _recipient(rules, draft) or _value(rules, draft)
    if denial is not None:
        return denial
    fee_cap = draft.max_fee_per_gas_wei
    if rules.max_fee_per_gas_wei is not None:
        if fee_cap is not None and fee_cap > rules.max_fee_per_gas_wei:
            return _over(MAX_FEE, "max_fee_per_gas", fee_cap, rules.max_fee_per_gas_wei)
        fee_cap = fee_cap if fee_cap is not None else rules.max_fee_per_gas_wei
        tip = draft.max_priority_fee_per_gas_wei
        if tip is not None and tip > fee_cap:
            return _over(MAX_FEE, "max_priority_fee_per_gas", tip, rules.max_fee_per_gas_wei)
    if rules.max_cost_wei is None:
        return Passed(fee_cap)
    return _cost(rules.max_cost_wei, draft, fee_cap)


def _recipient(rules: PolicyRules, draft: Draft) -> Denial | None:
    if rules.allowed_recipients is None:
        return None
    found = next((r for r in rules.allowed_recipients if r.address == draft.to), None)
    if found is None:
        return Denial(RECIPIENTS, f"{draft.to} is not an allowed recipient of this wallet")
    if found.selectors is None:
        return None
    selector = "0x" + draft.data[:4].hex() if len(draft.data) >= 4 else None
    if selector not in found.selectors:
        shown = selector or "no calldata"
        return Denial(SELECTORS, f"{shown} is not an allowed function of {draft.to}")
    return None


def _value(rules: PolicyRules, draft: Draft) -> Denial | None:
    cap = rules.max_value_wei_per_tx
    if cap is not None and draft.value_wei > cap:
        return _over(MAX_VALUE, "value", draft.value_wei, cap)
    return None


def _cost(max_cost_wei: int, draft: Draft, fee_cap: int | None) -> Denial | Passed:
    """Worst case: value + gas_limit * max fee per gas. Without a fee cap from the request
    or the policy, the chain's cap bounds it, and is stored with the request."""
    fee = fee_cap if fee_cap is not None else draft.chain_fee_cap_wei
    if draft.gas_limit is None or fee is None:
        missing = "gas_limit" if draft.gas_limit is None else "max_fee_per_gas"
        return Denial(
            MAX_COST,
            f"the worst-case cost is bounded by max_cost_wei: the request needs {missing}",
            limit=str(max_cost_wei),
        )
    cost = draft.value_wei + draft.gas_limit * fee
    if cost > max_cost_wei:
        return _over(MAX_COST, "value + gas_limit * max_fee_per_gas", cost, max_cost_wei)
    return Passed(fee)


def _over(rule: str, what: str, value: int, limit: int) -> Denial:
    return Denial(
        rule, f"{what} ({value} wei) is above the policy's {rule} of {limit} wei", str(limit)
    )


def limits_for(rules: PolicyRules, chain_id: int) -> list[ValueLimit]:
    """The rolling limits that count requests on `chain_id`."""
    return [limit for limit in rules.limits or () if limit.chain_id in (None, chain_id)]


def check_limits(
    limits: list[ValueLimit], value_wei: int, spent_by_window: Mapping[int, int]
) -> Denial | None:
    """The first rolling limit that `value_wei` more would exceed; `spent_by_window` is the
    value already admitted (and not released) in each window, in seconds."""
    for limit in limits:
        spent = spent_by_window[limit.window_s]
        if spent + value_wei > limit.max_value_wei:
            return Denial(
                LIMITS,
                f"{value_wei} wei more would exceed {limit.max_value_wei} wei per "
                f"{limit.window_s} s on this chain ({spent} wei admitted in the window)",
                limit=str(limit.max_value_wei),
                window_s=limit.window_s,
            )
    return None
