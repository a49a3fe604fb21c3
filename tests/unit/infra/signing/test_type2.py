"""Type-2 transactions encoded without eth-account's dict handling: the same bytes as
eth-account's, for generated inputs, and anything unusual left to eth-account."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainflow.infra.signing.type2 import type_2_fields
from tests.support.signing import SIGNER, TO, UINT, assert_signed_as_eth_account, plain_fields

PLAIN: dict[str, object] = {
    "type": 2,
    "chainId": 31337,
    "nonce": 7,
    "to": TO,
    "value": 1,
    "gas": 21000,
    "maxFeePerGas": 2_000_000_000,
    "maxPriorityFeePerGas": 1_000_000_000,
    "data": b"",
}


@st.composite
def plain_txs(draw: st.DrawFn) -> dict[str, object]:
    fees = {"maxFeePerGas": draw(UINT), "maxPriorityFeePerGas": draw(UINT)}
    return {**draw(plain_fields()), "type": 2, **fees}


class TestSameBytesAsEthAccount:
    @settings(max_examples=200, deadline=None)
    @given(tx=plain_txs())
    async def test_raw_and_hash(self, tx: dict[str, object]) -> None:
        assert type_2_fields(tx) is not None  # the fast path is what is compared here
        await assert_signed_as_eth_account(tx)

    async def test_the_dict_chainflow_builds(self) -> None:
        await assert_signed_as_eth_account(PLAIN)

    @pytest.mark.parametrize(
        "change",
        [
            {"value": 0, "nonce": 0, "maxPriorityFeePerGas": 0},  # zero: the empty string
            {"value": 0x7F, "nonce": 0x80},  # one byte: itself below 0x80, prefixed from it
            {"data": b"\x00"},
            {"data": b"\x7f"},
            {"data": b"\x80"},
            {"data": bytes(55)},  # the longest string with a one-byte prefix
            {"data": bytes(56)},
            {"data": bytes(256)},  # two bytes of length
            {"value": 2**256 - 1, "gas": 2**64 - 1},
        ],
        ids=repr,
    )
    async def test_rlp_length_boundaries(self, change: dict[str, object]) -> None:
        await assert_signed_as_eth_account({**PLAIN, **change})


class TestLeftToEthAccount:
    @pytest.mark.parametrize(
        "change",
        [
            {"type": "0x2"},
            {"type": True},
            {"nonce": "0x7"},
            {"nonce": True},
            {"value": -1},
            {"to": TO.lower()},
            {"to": None},
            {"to": bytes.fromhex(TO[2:])},
            {"data": "0x"},
            {"data": bytearray()},
            {"accessList": []},
        ],
        ids=repr,
    )
    def test_unusual_dicts_are_not_encoded_here(self, change: dict[str, object]) -> None:
        assert type_2_fields({**PLAIN, **change}) is None

    def test_a_legacy_dict_is_not_encoded_here(self) -> None:
        legacy = {k: v for k, v in PLAIN.items() if k not in ("type", "maxFeePerGas")}
        legacy["gasPrice"] = legacy.pop("maxPriorityFeePerGas")
        assert type_2_fields(legacy) is None

    async def test_a_bad_address_still_gets_eth_accounts_error(self) -> None:
        bad = TO.replace("dEaD", "DEAD")  # wrong EIP-55 checksum

        with pytest.raises(TypeError, match="invalid fields"):
            await SIGNER.sign_transaction({**PLAIN, "to": bad})

    async def test_an_access_list_is_signed_by_eth_account(self) -> None:
        await assert_signed_as_eth_account(
            {**PLAIN, "accessList": [{"address": TO, "storageKeys": []}]}
        )
