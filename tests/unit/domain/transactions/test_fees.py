"""Fee math: suggestions, caps, replacement bumps (both fields ≥ +10 %, never above a cap), gas."""

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from chainflow.core.errors import Conflict, InvalidInput
from chainflow.domain.transactions.fees import (
    Eip1559Fees,
    FeeCapReached,
    FeeCaps,
    Fees,
    GasAboveBlockLimit,
    LegacyFees,
    Percent,
    bump,
    can_replace,
    clamp,
    fee_cap_of,
    median,
    suggest_eip1559,
    suggest_legacy,
    with_gas_buffer,
)

GWEI = 10**9
NO_CAPS = FeeCaps()
NO_MARKET = Eip1559Fees(0, 0)


def ceil_percent(value_wei: int, percent: Percent) -> int:
    """The reference: value x (100 + percent) / 100 rounded up, via Fraction."""
    exact = Fraction(value_wei) * (100 + Fraction(percent)) / 100
    return -(-exact.numerator // exact.denominator)


def min_replacement(value_wei: int) -> int:
    """The smallest value geth's txpool takes as a replacement (list.Add), rounded up."""
    return max(ceil_percent(value_wei, 10), value_wei + 1)


wei = st.integers(min_value=0, max_value=2**256 - 1)
percents = st.decimals(min_value=0, max_value=200, places=2) | st.integers(0, 200)
optional_caps = st.none() | wei


class TestMedian:
    @pytest.mark.parametrize(
        ("values", "expected"),
        [
            ([], 0),
            ([7], 7),
            ([3, 1, 2], 2),
            ([1, 2], 2),  # mean of the middle pair, rounded up
            ([4, 1, 2, 10], 3),
            ([2, 2], 2),
        ],
    )
    def test_median(self, values: list[int], expected: int) -> None:
        assert median(values) == expected

    @given(st.lists(wei, min_size=1))
    def test_median_lies_between_the_extremes(self, values: list[int]) -> None:
        assert min(values) <= median(values) <= max(values)


class TestSuggestEip1559:
    @pytest.mark.parametrize(
        ("base_wei", "samples", "min_tip_wei", "multiplier", "caps", "expected"),
        [
            (
                10 * GWEI,
                [1, 2 * GWEI, 3 * GWEI],
                GWEI,
                2,
                NO_CAPS,
                Eip1559Fees(22 * GWEI, 2 * GWEI),
            ),
            # Empty blocks report 0 at every percentile and are left out.
            (
                10 * GWEI,
                [0, 0, 3 * GWEI, 5 * GWEI],
                0,
                2,
                NO_CAPS,
                Eip1559Fees(24 * GWEI, 4 * GWEI),
            ),
            (GWEI, [0, 0], GWEI, 2, NO_CAPS, Eip1559Fees(3 * GWEI, GWEI)),
            (GWEI, [], 5, 2, NO_CAPS, Eip1559Fees(2 * GWEI + 5, 5)),
            (GWEI, [1], GWEI, 2, NO_CAPS, Eip1559Fees(3 * GWEI, GWEI)),  # floor beats the samples
            (7, [1], 0, Decimal("1.4"), NO_CAPS, Eip1559Fees(11, 1)),  # 9.8 rounds up to 10
            (10, [1], 0, 1, NO_CAPS, Eip1559Fees(11, 1)),
            (0, [], 0, 2, NO_CAPS, Eip1559Fees(0, 0)),
            (10 * GWEI, [GWEI], 0, 2, FeeCaps(15 * GWEI), Eip1559Fees(15 * GWEI, GWEI)),
            (10 * GWEI, [3 * GWEI], 0, 2, FeeCaps(2 * GWEI), Eip1559Fees(2 * GWEI, 2 * GWEI)),
            (10 * GWEI, [3 * GWEI], 0, 2, FeeCaps(None, GWEI), Eip1559Fees(23 * GWEI, GWEI)),
        ],
    )
    def test_suggestion(
        self,
        base_wei: int,
        samples: list[int],
        min_tip_wei: int,
        multiplier: Percent,
        caps: FeeCaps,
        expected: Eip1559Fees,
    ) -> None:
        fees = suggest_eip1559(
            next_base_fee_wei=base_wei,
            tip_samples_wei=samples,
            min_tip_wei=min_tip_wei,
            base_fee_multiplier=multiplier,
            caps=caps,
        )
        assert fees == expected

    def test_default_headroom_is_twice_the_base_fee(self) -> None:
        fees = suggest_eip1559(next_base_fee_wei=100, tip_samples_wei=(5,), min_tip_wei=0)
        assert fees == Eip1559Fees(205, 5)

    @given(
        base_wei=wei,
        samples=st.lists(wei, max_size=20),
        min_tip_wei=wei,
        multiplier=st.decimals(min_value=1, max_value=4, places=3),
        fee_cap=optional_caps,
        tip_cap=optional_caps,
    )
    def test_suggestion_respects_floor_headroom_and_caps(
        self,
        base_wei: int,
        samples: list[int],
        min_tip_wei: int,
        multiplier: Decimal,
        fee_cap: int | None,
        tip_cap: int | None,
    ) -> None:
        fees = suggest_eip1559(
            next_base_fee_wei=base_wei,
            tip_samples_wei=samples,
            min_tip_wei=min_tip_wei,
            base_fee_multiplier=multiplier,
            caps=FeeCaps(fee_cap, tip_cap),
        )
        tip, max_fee = fees.max_priority_fee_per_gas_wei, fees.max_fee_per_gas_wei
        assert tip <= max_fee
        if fee_cap is None:
            assert max_fee * multiplier.as_integer_ratio()[1] >= (
                base_wei * multiplier.as_integer_ratio()[0]
            )
        else:
            assert max_fee <= fee_cap
        if tip_cap is not None:
            assert tip <= tip_cap
        if fee_cap is None and tip_cap is None:
            assert tip >= min_tip_wei


class TestSuggestLegacy:
    @pytest.mark.parametrize(
        ("price_wei", "caps", "expected"),
        [
            (500, NO_CAPS, LegacyFees(500)),
            (500, FeeCaps(300), LegacyFees(300)),
            (500, FeeCaps(800), LegacyFees(500)),
            (500, FeeCaps(None, 1), LegacyFees(500)),  # a tip cap means nothing to gasPrice
        ],
    )
    def test_suggestion(self, price_wei: int, caps: FeeCaps, expected: LegacyFees) -> None:
        assert suggest_legacy(gas_price_wei=price_wei, caps=caps) == expected


class TestCaps:
    @pytest.mark.parametrize(
        ("fees", "caps", "expected"),
        [
            (Eip1559Fees(100, 80), FeeCaps(50), Eip1559Fees(50, 50)),
            (Eip1559Fees(100, 80), FeeCaps(None, 10), Eip1559Fees(100, 10)),
            (Eip1559Fees(100, 80), FeeCaps(90, 85), Eip1559Fees(90, 80)),
            (Eip1559Fees(100, 80), NO_CAPS, Eip1559Fees(100, 80)),
            (Eip1559Fees(10, 80), NO_CAPS, Eip1559Fees(10, 10)),  # tip never above fee cap
            (LegacyFees(100), FeeCaps(50, 1), LegacyFees(50)),
            (LegacyFees(100), NO_CAPS, LegacyFees(100)),
        ],
    )
    def test_clamp(self, fees: Fees, caps: FeeCaps, expected: Fees) -> None:
        assert clamp(fees, caps) == expected

    @pytest.mark.parametrize(
        ("left", "right", "expected"),
        [
            (FeeCaps(100, None), FeeCaps(80, 5), FeeCaps(80, 5)),
            (FeeCaps(70, 9), FeeCaps(80, 5), FeeCaps(70, 5)),
            (NO_CAPS, NO_CAPS, NO_CAPS),
        ],
    )
    def test_merged_takes_the_tighter(
        self, left: FeeCaps, right: FeeCaps, expected: FeeCaps
    ) -> None:
        assert left.merged(right) == expected
        assert right.merged(left) == expected


class TestBump:
    @pytest.mark.parametrize(
        ("previous", "market", "caps", "expected"),
        [
            # Default 12.5 % on both fields.
            (
                Eip1559Fees(100 * GWEI, 2 * GWEI),
                NO_MARKET,
                NO_CAPS,
                Eip1559Fees(112_500_000_000, 2_250_000_000),
            ),
            # Rounded up to whole wei.
            (Eip1559Fees(101, 11), NO_MARKET, NO_CAPS, Eip1559Fees(114, 13)),
            # A 1-wei tip still rises (1.125 → 2); a 0-wei tip must rise too (geth wants >).
            (Eip1559Fees(10, 1), NO_MARKET, NO_CAPS, Eip1559Fees(12, 2)),
            (Eip1559Fees(10, 0), NO_MARKET, NO_CAPS, Eip1559Fees(12, 1)),
            (Eip1559Fees(0, 0), NO_MARKET, NO_CAPS, Eip1559Fees(1, 1)),
            # The market wins when higher, field by field.
            (Eip1559Fees(100, 10), Eip1559Fees(500, 50), NO_CAPS, Eip1559Fees(500, 50)),
            (Eip1559Fees(100, 10), Eip1559Fees(500, 5), NO_CAPS, Eip1559Fees(500, 12)),
            # A market tip above the new fee cap is lowered to it.
            (Eip1559Fees(100, 10), Eip1559Fees(0, 900), NO_CAPS, Eip1559Fees(113, 113)),
            # Lowered to the cap while still a valid replacement.
            (Eip1559Fees(100, 10), NO_MARKET, FeeCaps(111), Eip1559Fees(111, 12)),
            (Eip1559Fees(100, 10), NO_MARKET, FeeCaps(110), Eip1559Fees(110, 12)),
            (Eip1559Fees(100, 10), Eip1559Fees(900, 90), FeeCaps(200, 20), Eip1559Fees(200, 20)),
            (Eip1559Fees(100, 10), NO_MARKET, FeeCaps(None, 11), Eip1559Fees(113, 11)),
            # A legacy market means nothing to 1559 fees, and the other way round.
            (Eip1559Fees(100, 10), LegacyFees(10**6), NO_CAPS, Eip1559Fees(113, 12)),
            (LegacyFees(1000), NO_MARKET, NO_CAPS, LegacyFees(1125)),
            (LegacyFees(1000), LegacyFees(0), NO_CAPS, LegacyFees(1125)),
            (LegacyFees(1000), LegacyFees(5000), NO_CAPS, LegacyFees(5000)),
            (LegacyFees(1000), LegacyFees(5000), FeeCaps(1200), LegacyFees(1200)),
            (LegacyFees(1000), NO_MARKET, FeeCaps(1100, 1), LegacyFees(1100)),
            (LegacyFees(0), NO_MARKET, NO_CAPS, LegacyFees(1)),
        ],
    )
    def test_bump(self, previous: Fees, market: Fees, caps: FeeCaps, expected: Fees) -> None:
        assert bump(previous, market=market, caps=caps) == expected

    @pytest.mark.parametrize(
        ("previous", "caps"),
        [
            (Eip1559Fees(100, 10), FeeCaps(109)),  # the fee cap cannot rise 10 %
            (Eip1559Fees(100, 10), FeeCaps(100)),
            (Eip1559Fees(100, 10), FeeCaps(None, 10)),  # the tip cannot rise at all
            (Eip1559Fees(100, 0), FeeCaps(None, 0)),
            (LegacyFees(1000), FeeCaps(1099)),
            (LegacyFees(1000), FeeCaps(1000, 10**9)),
        ],
    )
    def test_refused_when_the_smallest_valid_replacement_crosses_a_cap(
        self, previous: Fees, caps: FeeCaps
    ) -> None:
        with pytest.raises(FeeCapReached) as caught:
            bump(previous, market=NO_MARKET, caps=caps)
        assert set(caught.value.extra) == {"needed_wei", "cap_wei"}

    @pytest.mark.parametrize(
        ("percent", "min_percent", "expected"),
        [
            (Decimal("12.5"), Decimal(10), Eip1559Fees(1125, 113)),
            (20, 10, Eip1559Fees(1200, 120)),
            (Decimal("0.1"), 10, Eip1559Fees(1100, 110)),  # never below the minimum
            (0, Decimal(15), Eip1559Fees(1150, 115)),
            (Decimal("33.333"), 10, Eip1559Fees(1334, 134)),
        ],
    )
    def test_percentages(
        self, percent: Percent, min_percent: Percent, expected: Eip1559Fees
    ) -> None:
        bumped = bump(
            Eip1559Fees(1000, 100),
            market=NO_MARKET,
            caps=NO_CAPS,
            percent=percent,
            min_percent=min_percent,
        )
        assert bumped == expected

    def test_defaults_are_twelve_and_a_half_asked_and_ten_at_least(self) -> None:
        previous = LegacyFees(1000)
        assert bump(previous, market=NO_MARKET, caps=NO_CAPS) == LegacyFees(1125)
        assert bump(previous, market=NO_MARKET, caps=NO_CAPS, percent=0) == LegacyFees(1100)

    def test_fee_cap_reached_is_a_conflict_with_a_stable_code(self) -> None:
        assert issubclass(FeeCapReached, Conflict)
        assert FeeCapReached.code == "fee_cap_reached"

    @given(
        fee=wei,
        tip=wei,
        market_fee=wei,
        market_tip=wei,
        fee_cap=optional_caps,
        tip_cap=optional_caps,
        percent=percents,
    )
    def test_eip1559_replacement_properties(
        self,
        fee: int,
        tip: int,
        market_fee: int,
        market_tip: int,
        fee_cap: int | None,
        tip_cap: int | None,
        percent: Percent,
    ) -> None:
        previous = Eip1559Fees(fee, min(tip, fee))
        old_tip = previous.max_priority_fee_per_gas_wei
        caps = FeeCaps(fee_cap, tip_cap)
        fee_blocked = fee_cap is not None and min_replacement(fee) > fee_cap
        tip_blocked = tip_cap is not None and min_replacement(old_tip) > tip_cap
        try:
            bumped = bump(
                previous, market=Eip1559Fees(market_fee, market_tip), caps=caps, percent=percent
            )
        except FeeCapReached:
            assert fee_blocked or tip_blocked
            return
        assert not fee_blocked
        assert not tip_blocked
        new_fee, new_tip = bumped.max_fee_per_gas_wei, bumped.max_priority_fee_per_gas_wei
        # Both fields replace: ≥ previous x 1.10 rounded up, and strictly higher.
        assert new_fee >= min_replacement(fee)
        assert new_tip >= min_replacement(old_tip)
        assert new_fee * 100 >= fee * 110
        assert new_tip * 100 >= old_tip * 110
        # Never above a cap, and the tip never above the fee cap.
        assert new_tip <= new_fee
        assert fee_cap is None or new_fee <= fee_cap
        assert tip_cap is None or new_tip <= tip_cap
        # As high as the asked-for bump and the market allow within the caps.
        wanted_fee = max(ceil_percent(fee, percent), market_fee)
        assert new_fee >= (wanted_fee if fee_cap is None else min(wanted_fee, fee_cap))
        if tip_cap is None:
            assert new_tip >= min(max(ceil_percent(old_tip, percent), market_tip), new_fee)

    @given(price=wei, market=wei, cap=optional_caps, percent=percents)
    def test_legacy_replacement_properties(
        self, price: int, market: int, cap: int | None, percent: Percent
    ) -> None:
        try:
            bumped = bump(
                LegacyFees(price), market=LegacyFees(market), caps=FeeCaps(cap), percent=percent
            )
        except FeeCapReached:
            assert cap is not None
            assert min_replacement(price) > cap
            return
        assert bumped.gas_price_wei >= min_replacement(price)
        assert bumped.gas_price_wei * 100 >= price * 110
        assert cap is None or bumped.gas_price_wei <= cap
        expected = max(ceil_percent(price, percent), market, min_replacement(price))
        assert bumped.gas_price_wei == (expected if cap is None else min(expected, cap))


class TestCanReplace:
    @pytest.mark.parametrize(
        ("previous", "caps", "min_percent", "expected"),
        [
            (Eip1559Fees(1000, 100), NO_CAPS, 10, True),
            (Eip1559Fees(1000, 100), FeeCaps(1100, 110), 10, True),  # exactly +10 %
            (Eip1559Fees(1000, 100), FeeCaps(1099, None), 10, False),
            (Eip1559Fees(1000, 100), FeeCaps(None, 109), 10, False),
            (Eip1559Fees(1000, 100), FeeCaps(1100, None), Decimal("12.5"), False),
            (Eip1559Fees(0, 0), FeeCaps(0, None), 10, False),  # a cap of 0 can never rise
            (Eip1559Fees(0, 0), FeeCaps(1, 1), 10, True),  # + 1 wei from 0
            (LegacyFees(1000), FeeCaps(1100), 10, True),
            (LegacyFees(1000), FeeCaps(1099), 10, False),
        ],
    )
    def test_whether_a_valid_replacement_fits_under_the_caps(
        self, previous: Fees, caps: FeeCaps, min_percent: Percent, expected: bool
    ) -> None:
        assert can_replace(previous, caps, min_percent=min_percent) is expected

    @given(fee=wei, tip=wei, fee_cap=optional_caps, tip_cap=optional_caps)
    def test_agrees_with_bump(
        self, fee: int, tip: int, fee_cap: int | None, tip_cap: int | None
    ) -> None:
        # Fees the engine signs never tip above their max fee (CI's hypothesis run found
        # 33 / 34, where bump and can_replace read the inconsistent pair differently).
        assume(tip <= fee)
        previous, caps = Eip1559Fees(fee, tip), FeeCaps(fee_cap, tip_cap)
        try:
            bump(previous, market=NO_MARKET, caps=caps)
        except FeeCapReached:
            assert not can_replace(previous, caps)
        else:
            assert can_replace(previous, caps)

    def test_fee_cap_of_is_the_fee_cap_or_the_gas_price(self) -> None:
        assert fee_cap_of(Eip1559Fees(30, 2)) == 30
        assert fee_cap_of(LegacyFees(7)) == 7


class TestGasBuffer:
    @pytest.mark.parametrize(
        ("estimate", "buffer_percent", "block_gas_limit", "expected"),
        [
            (21_000, 20, None, 25_200),
            (100_001, 20, None, 120_002),  # 120001.2 rounds up
            (1, 20, None, 2),
            (0, 20, None, 0),
            (50_000, 0, None, 50_000),
            (50_000, Decimal("12.5"), None, 56_250),
            (25_000_000, 20, 30_000_000, 30_000_000),  # a full block at most
            (30_000_000, 20, 30_000_000, 30_000_000),
            (21_000, 20, 30_000_000, 25_200),
        ],
    )
    def test_buffer(
        self, estimate: int, buffer_percent: Percent, block_gas_limit: int | None, expected: int
    ) -> None:
        gas = with_gas_buffer(
            estimate, buffer_percent=buffer_percent, block_gas_limit=block_gas_limit
        )
        assert gas == expected

    def test_default_buffer_is_twenty_percent(self) -> None:
        assert with_gas_buffer(100_000) == 120_000

    def test_an_estimate_above_the_block_limit_is_refused(self) -> None:
        with pytest.raises(GasAboveBlockLimit) as caught:
            with_gas_buffer(30_000_001, block_gas_limit=30_000_000)
        assert isinstance(caught.value, InvalidInput)
        assert caught.value.code == "gas_above_block_limit"

    @given(estimate=wei, buffer_percent=percents)
    def test_buffer_is_exact_and_rounded_up(self, estimate: int, buffer_percent: Percent) -> None:
        gas = with_gas_buffer(estimate, buffer_percent=buffer_percent)
        assert gas == ceil_percent(estimate, buffer_percent)
        assert gas >= estimate
