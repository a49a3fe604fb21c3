"""Fee math (DESIGN §7): EIP-1559 suggestions from fee history, legacy prices, bumps. Pure.

Integer wei only. A replacement must raise BOTH tip and fee cap by at least 10 % (geth and Besu
refuse less, research/txm-reliability.md §4.4); we bump by 12.5 % by default and never sign
above a cap: when the smallest valid bump would cross it, `FeeCapReached` is raised and the
caller re-broadcasts the highest existing attempt instead.
"""

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from chainflow.core.errors import Conflict

DEFAULT_BUMP_PERCENT = Decimal("12.5")
MIN_BUMP_PERCENT = Decimal(10)


class FeeCapReached(Conflict):
    code = "fee_cap_reached"


@dataclass(frozen=True)
class Eip1559Fees:
    max_fee_per_gas_wei: int
    max_priority_fee_per_gas_wei: int


@dataclass(frozen=True)
class LegacyFees:
    gas_price_wei: int


Fees = Eip1559Fees | LegacyFees


@dataclass(frozen=True)
class FeeCaps:
    max_fee_per_gas_wei: int | None = None
    max_priority_fee_per_gas_wei: int | None = None

    def merged(self, other: "FeeCaps") -> "FeeCaps":
        """The tighter of two sets of caps (chain and request)."""
        return FeeCaps(
            _min_opt(self.max_fee_per_gas_wei, other.max_fee_per_gas_wei),
            _min_opt(self.max_priority_fee_per_gas_wei, other.max_priority_fee_per_gas_wei),
        )


def _min_opt(a: int | None, b: int | None) -> int | None:
    values = [v for v in (a, b) if v is not None]
    return min(values) if values else None


def _ceil_percent(value: int, percent: Decimal) -> int:
    return int((Decimal(value) * (100 + percent) / 100).to_integral_value(ROUND_CEILING))


def median(values: list[int]) -> int:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0


def suggest_eip1559(
    *,
    next_base_fee_wei: int,
    tip_samples_wei: list[int],
    min_tip_wei: int,
    base_fee_multiplier: int = 2,
    caps: FeeCaps = FeeCaps(),
) -> Eip1559Fees:
    """Tip = median of recent tips (at least `min_tip_wei`); fee cap = base x multiplier + tip."""
    tip = max(median(tip_samples_wei), min_tip_wei)
    max_fee = next_base_fee_wei * base_fee_multiplier + tip
    return clamp(Eip1559Fees(max_fee, tip), caps)


def suggest_legacy(*, gas_price_wei: int, caps: FeeCaps = FeeCaps()) -> LegacyFees:
    cap = caps.max_fee_per_gas_wei
    return LegacyFees(min(gas_price_wei, cap) if cap is not None else gas_price_wei)


def clamp(fees: Eip1559Fees, caps: FeeCaps) -> Eip1559Fees:
    """Lower both fields to the caps and keep tip ≤ fee cap."""
    max_fee = fees.max_fee_per_gas_wei
    if caps.max_fee_per_gas_wei is not None:
        max_fee = min(max_fee, caps.max_fee_per_gas_wei)
    tip = min(fees.max_priority_fee_per_gas_wei, max_fee)
    if caps.max_priority_fee_per_gas_wei is not None:
        tip = min(tip, caps.max_priority_fee_per_gas_wei)
    return Eip1559Fees(max_fee, tip)


def _bumped(old: int, market: int, cap: int | None, *, percent: Decimal) -> int:
    floor = _ceil_percent(old, MIN_BUMP_PERCENT)
    wanted = max(_ceil_percent(old, percent), market, floor)
    if cap is not None:
        if floor > cap:
            raise FeeCapReached(f"a valid replacement needs {floor} wei, above the cap {cap} wei")
        wanted = min(wanted, cap)
    return wanted


def bump(
    previous: Fees,
    *,
    market: Fees,
    caps: FeeCaps,
    percent: Decimal = DEFAULT_BUMP_PERCENT,
) -> Fees:
    """Fees for a replacement: each field ≥ previous x 1.10 (default x 1.125), ≥ market, ≤ cap.

    Raises:
        FeeCapReached: the smallest valid replacement would exceed a cap.
    """
    if isinstance(previous, LegacyFees):
        market_price = market.gas_price_wei if isinstance(market, LegacyFees) else 0
        return LegacyFees(
            _bumped(previous.gas_price_wei, market_price, caps.max_fee_per_gas_wei, percent=percent)
        )
    market_1559 = market if isinstance(market, Eip1559Fees) else Eip1559Fees(0, 0)
    max_fee = _bumped(
        previous.max_fee_per_gas_wei,
        market_1559.max_fee_per_gas_wei,
        caps.max_fee_per_gas_wei,
        percent=percent,
    )
    tip_cap = _min_opt(caps.max_priority_fee_per_gas_wei, max_fee)
    tip = _bumped(
        previous.max_priority_fee_per_gas_wei,
        market_1559.max_priority_fee_per_gas_wei,
        tip_cap,
        percent=percent,
    )
    return Eip1559Fees(max_fee, tip)
