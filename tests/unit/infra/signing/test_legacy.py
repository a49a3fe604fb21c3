"""Legacy (EIP-155) transactions encoded with rlp alone: the same bytes as eth-account's, for
generated inputs, and anything unusual left to eth-account."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainflow.infra.signing.legacy import legacy_fields
from tests.support.signing import TO, UINT, assert_signed_as_eth_account, plain_fields

PLAIN: dict[str, object] = {
    "chainId": 31337,
    "nonce": 7,
    "to": TO,
    "value": 1,
    "gas": 21000,
    "gasPrice": 1_000_000_000,
    "data": b"",
}


@st.composite
def plain_txs(draw: st.DrawFn) -> dict[str, object]:
    return {**draw(plain_fields()), "gasPrice": draw(UINT)}


class TestSameBytesAsEthAccount:
    @settings(max_examples=200, deadline=None)
    @given(tx=plain_txs())
    async def test_raw_and_hash(self, tx: dict[str, object]) -> None:
        assert legacy_fields(tx) is not None  # the fast path is what is compared here
        await assert_signed_as_eth_account(tx)


class TestLeftToEthAccount:
    @pytest.mark.parametrize(
        "change",
        [
            {"chainId": 0},
            {"chainId": "0x7a69"},
            {"gasPrice": True},
            {"value": -1},
            {"to": TO.lower()},
            {"to": None},
            {"data": "0x"},
            {"type": 0},
        ],
        ids=repr,
    )
    def test_unusual_dicts_are_not_encoded_here(self, change: dict[str, object]) -> None:
        assert legacy_fields({**PLAIN, **change}) is None

    def test_a_dict_without_a_chain_id_is_not_encoded_here(self) -> None:
        assert legacy_fields({k: v for k, v in PLAIN.items() if k != "chainId"}) is None

    async def test_a_hex_string_value_is_signed_by_eth_account(self) -> None:
        await assert_signed_as_eth_account({**PLAIN, "value": "0x1"})
