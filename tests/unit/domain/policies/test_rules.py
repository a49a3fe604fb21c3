"""The rules of a spending policy, table by table (pure: no database)."""

from typing import Any

import pytest

from chainflow.domain.policies import rules
from chainflow.domain.policies.schemas import PolicyRules

TO = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
ELSE = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
TRANSFER = bytes.fromhex("a9059cbb") + bytes(64)


def draft(**fields: Any) -> rules.Draft:
    base: dict[str, Any] = {
        "chain_id": 1,
        "to": TO,
        "value_wei": 0,
        "data": b"",
        "gas_limit": None,
        "max_fee_per_gas_wei": None,
        "max_priority_fee_per_gas_wei": None,
        "chain_fee_cap_wei": None,
    }
    return rules.Draft(**(base | fields))


def policy(**fields: Any) -> PolicyRules:
    return PolicyRules.model_validate(fields)


class TestCheck:
    @pytest.mark.parametrize(
        ("rules_", "fields", "denied_by"),
        [
            ({}, {"value_wei": 10**30}, None),
            ({"allowed_recipients": []}, {}, rules.RECIPIENTS),
            ({"allowed_recipients": [{"address": ELSE}]}, {}, rules.RECIPIENTS),
            ({"allowed_recipients": [{"address": TO.lower()}]}, {}, None),
            (
                {"allowed_recipients": [{"address": TO, "selectors": ["0xA9059CBB"]}]},
                {"data": TRANSFER},
                None,
            ),
            (
                {"allowed_recipients": [{"address": TO, "selectors": ["0xa9059cbb"]}]},
                {},
                rules.SELECTORS,
            ),
            (
                {"allowed_recipients": [{"address": TO, "selectors": ["0xa9059cbb"]}]},
                {"data": b"\xa9\x05\x9c"},
                rules.SELECTORS,
            ),
            ({"max_value_wei_per_tx": "5"}, {"value_wei": 5}, None),
            ({"max_value_wei_per_tx": "5"}, {"value_wei": 6}, rules.MAX_VALUE),
            ({"max_fee_per_gas_wei": "100"}, {"max_fee_per_gas_wei": 101}, rules.MAX_FEE),
            ({"max_fee_per_gas_wei": "100"}, {"max_priority_fee_per_gas_wei": 101}, rules.MAX_FEE),
            ({"max_cost_wei": "100"}, {"gas_limit": 10, "max_fee_per_gas_wei": 10}, None),
            (
                {"max_cost_wei": "100"},
                {"gas_limit": 10, "max_fee_per_gas_wei": 10, "value_wei": 1},
                rules.MAX_COST,
            ),
            ({"max_cost_wei": "100"}, {"max_fee_per_gas_wei": 1}, rules.MAX_COST),
            ({"max_cost_wei": "100"}, {"gas_limit": 10}, rules.MAX_COST),
            ({"max_cost_wei": "100"}, {"gas_limit": 10, "chain_fee_cap_wei": 10}, None),
            (
                {"max_cost_wei": "100", "max_fee_per_gas_wei": "11"},
                {"gas_limit": 10},
                rules.MAX_COST,
            ),
        ],
    )
    def test_the_first_rule_broken_is_named(
        self, rules_: dict[str, Any], fields: dict[str, Any], denied_by: str | None
    ) -> None:
        verdict = rules.check(policy(**rules_), draft(**fields))
        if denied_by is None:
            assert isinstance(verdict, rules.Passed)
        else:
            assert isinstance(verdict, rules.Denial)
            assert verdict.rule == denied_by

    @pytest.mark.parametrize(
        ("rules_", "fields", "fee_cap"),
        [
            ({}, {}, None),
            ({}, {"max_fee_per_gas_wei": 7}, 7),
            ({"max_fee_per_gas_wei": "9"}, {}, 9),
            ({"max_fee_per_gas_wei": "9"}, {"max_fee_per_gas_wei": 7}, 7),
            ({"max_cost_wei": "1000"}, {"gas_limit": 10, "chain_fee_cap_wei": 50}, 50),
        ],
    )
    def test_the_fee_cap_to_store(
        self, rules_: dict[str, Any], fields: dict[str, Any], fee_cap: int | None
    ) -> None:
        verdict = rules.check(policy(**rules_), draft(**fields))
        assert verdict == rules.Passed(fee_cap)


class TestLimits:
    def test_limits_apply_to_their_chain_or_every_chain(self) -> None:
        rules_ = policy(
            limits=[
                {"window_s": 60, "max_value_wei": "1"},
                {"window_s": 3600, "max_value_wei": "2", "chain_id": 1},
                {"window_s": 7200, "max_value_wei": "3", "chain_id": 5},
            ]
        )
        assert [limit.window_s for limit in rules.limits_for(rules_, 1)] == [60, 3600]
        assert [limit.window_s for limit in rules.limits_for(rules_, 5)] == [60, 7200]

    @pytest.mark.parametrize(
        ("spent", "value", "denied"), [(0, 10, False), (5, 5, False), (5, 6, True), (10, 0, False)]
    )
    def test_a_limit_counts_what_was_admitted(self, spent: int, value: int, denied: bool) -> None:
        limits = rules.limits_for(policy(limits=[{"window_s": 60, "max_value_wei": "10"}]), 1)
        denial = rules.check_limits(limits, value, {60: spent})
        assert (denial is not None) == denied
        if denial is not None:
            assert (denial.rule, denial.limit, denial.window_s) == (rules.LIMITS, "10", 60)
