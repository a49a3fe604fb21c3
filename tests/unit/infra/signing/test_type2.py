"""Type-2 transactions encoded without eth-account's dict handling: the same bytes as
eth-account's, for generated inputs, and anything unusual left to eth-account."""

import pytest
from eth_account import Account
from eth_utils.address import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from chainflow.core.types import SecretBytes
from chainflow.infra.signing.local import LocalSigner
from chainflow.infra.signing.type2 import type_2_fields

KEY_HEX = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
SIGNER = LocalSigner(SecretBytes(bytes.fromhex(KEY_HEX)))
TO = "0x000000000000000000000000000000000000dEaD"
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

uint = st.integers(min_value=0, max_value=2**256 - 1)
small = st.integers(min_value=0, max_value=2**64 - 1)


@st.composite
def plain_txs(draw: st.DrawFn) -> dict[str, object]:
    to = to_checksum_address(draw(st.binary(min_size=20, max_size=20)))
    return {
        "type": 2,
        "chainId": draw(st.integers(min_value=1, max_value=2**63)),
        "nonce": draw(small),
        "to": to,
        "value": draw(uint),
        "gas": draw(small),
        "maxFeePerGas": draw(uint),
        "maxPriorityFeePerGas": draw(uint),
        "data": draw(st.binary(max_size=300)),
    }


class TestSameBytesAsEthAccount:
    @settings(max_examples=200, deadline=None)
    @given(tx=plain_txs())
    async def test_raw_and_hash(self, tx: dict[str, object]) -> None:
        assert type_2_fields(tx) is not None  # the fast path is what is compared here
        expected = Account.sign_transaction(dict(tx), KEY_HEX)

        signed = await SIGNER.sign_transaction(tx)

        assert signed.raw == bytes(expected.raw_transaction)
        assert signed.hash == "0x" + bytes(expected.hash).hex()

    async def test_the_dict_chainflow_builds(self) -> None:
        expected = Account.sign_transaction(dict(PLAIN), KEY_HEX)
        assert (await SIGNER.sign_transaction(PLAIN)).raw == bytes(expected.raw_transaction)


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
        tx = {**PLAIN, "accessList": [{"address": TO, "storageKeys": []}]}
        expected = Account.sign_transaction(dict(tx), KEY_HEX)

        assert (await SIGNER.sign_transaction(tx)).raw == bytes(expected.raw_transaction)
