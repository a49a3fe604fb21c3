"""Fee math (DESIGN §7): 1559 and legacy suggestions, caps, replacement bumps, gas buffer. Pure."""

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, TypeAlias, overload

from chainflow.core.errors import Conflict, InvalidInput

# All amounts are integer wei. Percentages and multipliers may be Decimal ("12.5"), never float;
# they are turned into an exact integer ratio, so every result is exact and rounded up.
Percent: TypeAlias = Decimal | int

# geth, Besu and Erigon refuse a replacement that raises the tip or the fee cap by less than
# 10 % (research/txm-reliability.md §4.4). We bump by 12.5 % so a node configured a little
# stricter still takes it.
DEFAULT_BUMP_PERCENT = Decimal("12.5")
MIN_BUMP_PERCENT = Decimal(10)
DEFAULT_GAS_BUFFER_PERCENT = 20


class FeeCapReached(Conflict):
    code = "fee_cap_reached"
    title = "Fee cap reached"


class GasAboveBlockLimit(InvalidInput):
    code = "gas_above_block_limit"
    title = "Gas above block limit"


@dataclass(frozen=True)
class Eip1559Fees:
    max_fee_per_gas_wei: int
    max_priority_fee_per_gas_wei: int


@dataclass(frozen=True)
class LegacyFees:
    gas_price_wei: int


Fees: TypeAlias = Eip1559Fees | LegacyFees


@dataclass(frozen=True)
class Market:
    """What a new transaction should carry now, and the base fee of the next block, which
    any transaction must at least offer to be included (None on a chain without EIP-1559)."""

    fees: Fees
    base_fee_wei: int | None = None


@dataclass(frozen=True)
class FeeFloor:
    """The least `max_fee_per_gas` a request needs to be signed now: the next block's base
    fee. Signed below it, a request could not be included, and its nonce would hold every
    later nonce of its wallet (issue 14)."""

    base_fee_wei: int
    chain_pays: bool  # the chain's own cap reaches it: requests without a lower cap can go

    @property
    def min_request_cap_wei(self) -> int | None:
        """Request caps below this fall short of it; None when every request does."""
        return self.base_fee_wei if self.chain_pays else None


def fee_floor(base_fee_wei: int | None, *, chain_cap_wei: int | None) -> FeeFloor | None:
    """The floor under a base fee and a chain's cap; None without a base fee (legacy)."""
    if base_fee_wei is None:
        return None
    return FeeFloor(base_fee_wei, chain_cap_wei is None or chain_cap_wei >= base_fee_wei)


class Priced(Protocol):
    """What a signed attempt (models.TxAttempt) says of its fees."""

    @property
    def gas_price_wei(self) -> int | None: ...
    @property
    def max_fee_per_gas_wei(self) -> int | None: ...
    @property
    def max_priority_fee_per_gas_wei(self) -> int | None: ...


def fees_of(attempt: Priced) -> Fees:
    """The fees an attempt was signed with."""
    if attempt.gas_price_wei is not None:
        return LegacyFees(attempt.gas_price_wei)
    return Eip1559Fees(attempt.max_fee_per_gas_wei or 0, attempt.max_priority_fee_per_gas_wei or 0)


def fee_cap_of(fees: Fees) -> int:
    """The most these fees may pay per gas: the fee cap, or the legacy gas price."""
    return fees.gas_price_wei if isinstance(fees, LegacyFees) else fees.max_fee_per_gas_wei


@dataclass(frozen=True)
class FeeCaps:
    """Upper bounds; None means unbounded. For legacy fees the fee cap bounds the gas price."""

    max_fee_per_gas_wei: int | None = None
    max_priority_fee_per_gas_wei: int | None = None

    def merged(self, other: "FeeCaps") -> "FeeCaps":
        """Return the tighter of two sets of caps (chain and request)."""
        return FeeCaps(
            _min_opt(self.max_fee_per_gas_wei, other.max_fee_per_gas_wei),
            _min_opt(self.max_priority_fee_per_gas_wei, other.max_priority_fee_per_gas_wei),
        )


def _min_opt(a: int | None, b: int | None) -> int | None:
    values = [v for v in (a, b) if v is not None]
    return min(values) if values else None


def _at_most(value_wei: int, cap_wei: int | None) -> int:
    return value_wei if cap_wei is None else min(value_wei, cap_wei)


def _times_up(value_wei: int, factor: Percent) -> int:
    """value x factor, rounded up, in exact integer arithmetic."""
    numerator, denominator = Decimal(factor).as_integer_ratio()
    return -(-value_wei * numerator // denominator)


def _percent_up(value_wei: int, percent: Percent) -> int:
    """value x (100 + percent) / 100, rounded up, in exact integer arithmetic."""
    numerator, denominator = Decimal(percent).as_integer_ratio()
    return -(-value_wei * (100 * denominator + numerator) // (100 * denominator))


def median(values: Sequence[int]) -> int:
    """Return the median (the mean of the middle pair rounded up); 0 for no values."""
    ordered = sorted(values)
    if not ordered:
        return 0
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return -(-(ordered[middle - 1] + ordered[middle]) // 2)


def suggest_eip1559(
    *,
    next_base_fee_wei: int,
    tip_samples_wei: Sequence[int],
    min_tip_wei: int,
    base_fee_multiplier: Percent = 2,
    caps: FeeCaps = FeeCaps(),
) -> Eip1559Fees:
    """Suggest fees from eth_feeHistory: tip = median sample, fee cap = base x multiplier + tip.

    `next_base_fee_wei` is the last `baseFeePerGas` entry (the block after `newestBlock`).
    The default multiplier of 2 survives six full blocks in a row (1.125^6 ≈ 2.03, EIP-1559).
    """
    # Empty blocks report a 0 reward at every percentile; Chainlink's FeeHistory estimator
    # also drops them, or a quiet chain would drag the tip to the floor.
    tip = max(median([t for t in tip_samples_wei if t > 0]), min_tip_wei)
    max_fee = _times_up(next_base_fee_wei, base_fee_multiplier) + tip
    return clamp(Eip1559Fees(max_fee, tip), caps)


def suggest_legacy(*, gas_price_wei: int, caps: FeeCaps = FeeCaps()) -> LegacyFees:
    """Suggest a legacy gas price from eth_gasPrice, lowered to the fee cap."""
    return clamp(LegacyFees(gas_price_wei), caps)


@overload
def clamp(fees: Eip1559Fees, caps: FeeCaps) -> Eip1559Fees: ...
@overload
def clamp(fees: LegacyFees, caps: FeeCaps) -> LegacyFees: ...
def clamp(fees: Fees, caps: FeeCaps) -> Fees:
    """Lower every field to its cap, and keep tip ≤ fee cap."""
    if isinstance(fees, LegacyFees):
        return LegacyFees(_at_most(fees.gas_price_wei, caps.max_fee_per_gas_wei))
    max_fee = _at_most(fees.max_fee_per_gas_wei, caps.max_fee_per_gas_wei)
    tip = _at_most(
        min(fees.max_priority_fee_per_gas_wei, max_fee), caps.max_priority_fee_per_gas_wei
    )
    return Eip1559Fees(max_fee, tip)


def _raise_to(
    previous_wei: int,
    market_wei: int,
    cap_wei: int | None,
    *,
    percent: Percent,
    min_percent: Percent,
) -> int:
    # geth's txpool (core/txpool/legacypool/list.go, list.Add) wants each new value strictly
    # above the old one AND ≥ old x (100 + bump) / 100; `+ 1` matters for a 0-wei tip.
    floor_wei = max(_percent_up(previous_wei, min_percent), previous_wei + 1)
    if cap_wei is not None and floor_wei > cap_wei:
        raise FeeCapReached(
            f"a valid replacement needs {floor_wei} wei, above the cap of {cap_wei} wei",
            needed_wei=str(floor_wei),
            cap_wei=str(cap_wei),
        )
    return _at_most(max(_percent_up(previous_wei, percent), market_wei, floor_wei), cap_wei)


@overload
def bump(
    previous: Eip1559Fees,
    *,
    market: Fees,
    caps: FeeCaps,
    percent: Percent = ...,
    min_percent: Percent = ...,
) -> Eip1559Fees: ...
@overload
def bump(
    previous: LegacyFees,
    *,
    market: Fees,
    caps: FeeCaps,
    percent: Percent = ...,
    min_percent: Percent = ...,
) -> LegacyFees: ...
def bump(
    previous: Fees,
    *,
    market: Fees,
    caps: FeeCaps,
    percent: Percent = DEFAULT_BUMP_PERCENT,
    min_percent: Percent = MIN_BUMP_PERCENT,
) -> Fees:
    """Return replacement fees: each field > previous and ≥ it + min_percent %, ≤ its cap.

    Each field aims at previous x (1 + percent) or the market, whichever is higher, and is then
    lowered to its cap; the tip also stays ≤ the new fee cap. A market of the other fee type
    is ignored.

    Raises:
        FeeCapReached: the smallest valid replacement would exceed a cap. Never sign anyway:
            a replacement that does not replace is noise; re-send the highest attempt instead.
    """
    if isinstance(previous, LegacyFees):
        market_wei = market.gas_price_wei if isinstance(market, LegacyFees) else 0
        cap_wei = caps.max_fee_per_gas_wei
        price = _raise_to(
            previous.gas_price_wei, market_wei, cap_wei, percent=percent, min_percent=min_percent
        )
        return LegacyFees(price)
    return _bump_eip1559(
        previous, market=market, caps=caps, percent=percent, min_percent=min_percent
    )


def _bump_eip1559(
    previous: Eip1559Fees, *, market: Fees, caps: FeeCaps, percent: Percent, min_percent: Percent
) -> Eip1559Fees:
    market_1559 = market if isinstance(market, Eip1559Fees) else Eip1559Fees(0, 0)
    max_fee = _raise_to(
        previous.max_fee_per_gas_wei,
        market_1559.max_fee_per_gas_wei,
        caps.max_fee_per_gas_wei,
        percent=percent,
        min_percent=min_percent,
    )
    tip = _raise_to(
        previous.max_priority_fee_per_gas_wei,
        market_1559.max_priority_fee_per_gas_wei,
        _min_opt(caps.max_priority_fee_per_gas_wei, max_fee),
        percent=percent,
        min_percent=min_percent,
    )
    return Eip1559Fees(max_fee, tip)


def can_replace(previous: Fees, caps: FeeCaps, *, min_percent: Percent = MIN_BUMP_PERCENT) -> bool:
    """Whether a valid replacement of `previous` (each field up by `min_percent`) fits
    under `caps`."""
    try:
        bump(previous, market=previous, caps=caps, percent=min_percent, min_percent=min_percent)
    except FeeCapReached:
        return False
    return True


def with_gas_buffer(
    estimate: int,
    *,
    buffer_percent: Percent = DEFAULT_GAS_BUFFER_PERCENT,
    block_gas_limit: int | None = None,
) -> int:
    """Return a gas limit: the estimate plus `buffer_percent`, rounded up, at most a full block.

    Raises:
        GasAboveBlockLimit: the estimate alone does not fit in a block.
    """
    if block_gas_limit is not None and estimate > block_gas_limit:
        raise GasAboveBlockLimit(
            f"the call needs {estimate} gas, more than the block gas limit of {block_gas_limit}",
            estimate=estimate,
            block_gas_limit=block_gas_limit,
        )
    return _at_most(_percent_up(estimate, buffer_percent), block_gas_limit)
