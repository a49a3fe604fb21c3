"""Legacy (EIP-155) transactions encoded with rlp alone: the same bytes as eth-account's, for
generated inputs, and anything unusual left to eth-account."""

import pytest
from eth_account import Account
from eth_utils.address import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from chainflow.core.types import SecretBytes
from chainflow.infra.signing.legacy import legacy_fields
from chainflow.infra.signing.local import LocalSigner

KEY_HEX = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
SIGNER = LocalSigner(SecretBytes(bytes.fromhex(KEY_HEX)))
TO = "0x000000000000000000000000000000000000dEaD"
PLAIN: dict[str, object] = {
    "chainId": 31337,
    "nonce": 7,
    "to": TO,
    "value": 1,
    "gas": 21000,
    "gasPrice": 1_000_000_000,
    "data": b"",
}

uint = st.integers(min_value=0, max_value=2**256 - 1)
small = st.integers(min_value=0, max_value=2**64 - 1)


@st.composite
def plain_txs(draw: st.DrawFn) -> dict[str, object]:
    return {
        "chainId": draw(st.integers(min_value=1, max_value=2**63)),
        "nonce": draw(small),
        "to": to_checksum_address(draw(st.binary(min_size=20, max_size=20))),
        "value": draw(uint),
        "gas": draw(small),
        "gasPrice": draw(uint),
        "data": draw(st.binary(max_size=300)),
    }


class TestSameBytesAsEthAccount:
    @settings(max_examples=200, deadline=None)
    @given(tx=plain_txs())
    async def test_raw_and_hash(self, tx: dict[str, object]) -> None:
        assert legacy_fields(tx) is not None  # the fast path is what is compared here
        expected = Account.sign_transaction(dict(tx), KEY_HEX)

        signed = await SIGNER.sign_transaction(tx)

        assert signed.raw == bytes(expected.raw_transaction)
        assert signed.hash == "0x" + bytes(expected.hash).hex()


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
        tx = {**PLAIN, "value": "0x1"}
        expected = Account.sign_transaction(dict(tx), KEY_HEX)

        assert (await SIGNER.sign_transaction(tx)).raw == bytes(expected.raw_transaction)
