"""Fee math: suggestions, caps, and replacement bumps (both fields ≥ +10 %, never above a cap)."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chainflow.domain.transactions.fees import (
    Eip1559Fees,
    FeeCapReached,
    FeeCaps,
    LegacyFees,
    bump,
    clamp,
    suggest_eip1559,
    suggest_legacy,
)

GWEI = 10**9


class TestSuggest:
    def test_fee_cap_is_twice_next_base_fee_plus_median_tip(self) -> None:
        fees = suggest_eip1559(
            next_base_fee_wei=10 * GWEI, tip_samples_wei=[1, 2 * GWEI, 3 * GWEI], min_tip_wei=GWEI
        )
        assert fees == Eip1559Fees(22 * GWEI, 2 * GWEI)

    def test_tip_never_below_the_floor(self) -> None:
        fees = suggest_eip1559(next_base_fee_wei=GWEI, tip_samples_wei=[0, 0], min_tip_wei=GWEI)
        assert fees.max_priority_fee_per_gas_wei == GWEI

    def test_caps_lower_both_fields_and_keep_tip_below_fee_cap(self) -> None:
        fees = clamp(Eip1559Fees(100, 80), FeeCaps(max_fee_per_gas_wei=50))
        assert fees == Eip1559Fees(50, 50)
        assert clamp(Eip1559Fees(100, 80), FeeCaps(max_priority_fee_per_gas_wei=10)) == (
            Eip1559Fees(100, 10)
        )

    def test_legacy_price_is_capped(self) -> None:
        assert suggest_legacy(gas_price_wei=500, caps=FeeCaps(300)) == LegacyFees(300)

    def test_merged_caps_take_the_tighter(self) -> None:
        merged = FeeCaps(100, None).merged(FeeCaps(80, 5))
        assert merged == FeeCaps(80, 5)


class TestBump:
    def test_default_bump_is_twelve_and_a_half_percent_on_both(self) -> None:
        bumped = bump(Eip1559Fees(100 * GWEI, 2 * GWEI), market=Eip1559Fees(0, 0), caps=FeeCaps())
        assert bumped == Eip1559Fees(112_500_000_000, 2_250_000_000)

    def test_market_wins_when_higher(self) -> None:
        bumped = bump(Eip1559Fees(100, 10), market=Eip1559Fees(500, 50), caps=FeeCaps())
        assert bumped == Eip1559Fees(500, 50)

    def test_clamped_to_the_cap_while_still_a_valid_replacement(self) -> None:
        bumped = bump(Eip1559Fees(100, 10), market=Eip1559Fees(0, 0), caps=FeeCaps(111))
        assert bumped == Eip1559Fees(111, 12)

    def test_refused_when_a_valid_replacement_would_cross_the_cap(self) -> None:
        with pytest.raises(FeeCapReached):
            bump(Eip1559Fees(100, 10), market=Eip1559Fees(0, 0), caps=FeeCaps(109))

    def test_legacy_bump(self) -> None:
        assert bump(LegacyFees(1000), market=LegacyFees(0), caps=FeeCaps()) == LegacyFees(1125)

    @given(
        fee=st.integers(1, 10**15),
        tip=st.integers(0, 10**13),
        market=st.integers(0, 10**16),
        cap=st.none() | st.integers(1, 10**17),
        percent=st.decimals(10, 100, places=1),
    )
    def test_properties(
        self, fee: int, tip: int, market: int, cap: int | None, percent: Decimal
    ) -> None:
        previous = Eip1559Fees(fee, min(tip, fee))
        try:
            bumped = bump(
                previous,
                market=Eip1559Fees(market, market // 10),
                caps=FeeCaps(cap),
                percent=percent,
            )
        except FeeCapReached:
            assert cap is not None
            assert (
                -(-fee * 110 // 100) > cap
                or -(-previous.max_priority_fee_per_gas_wei * 110 // 100) > cap
            )
            return
        assert isinstance(bumped, Eip1559Fees)
        assert bumped.max_fee_per_gas_wei * 100 >= previous.max_fee_per_gas_wei * 110
        assert (
            bumped.max_priority_fee_per_gas_wei * 100 >= previous.max_priority_fee_per_gas_wei * 110
        )
        assert bumped.max_priority_fee_per_gas_wei <= bumped.max_fee_per_gas_wei
        if cap is not None:
            assert bumped.max_fee_per_gas_wei <= cap
