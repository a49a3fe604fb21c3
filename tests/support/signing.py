"""eth-account as the reference for the encoders that sign without it
(infra/signing/type2.py and legacy.py): the same raw bytes and hash for the same dict."""

from eth_account import Account
from eth_utils.address import to_checksum_address
from hypothesis import strategies as st

from chainflow.core.types import SecretBytes
from chainflow.infra.signing.local import LocalSigner

# The example key from eth-account's documentation.
KEY_HEX = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
SIGNER = LocalSigner(SecretBytes(bytes.fromhex(KEY_HEX)))
TO = "0x000000000000000000000000000000000000dEaD"
UINT = st.integers(min_value=0, max_value=2**256 - 1)
SMALL = st.integers(min_value=0, max_value=2**64 - 1)


@st.composite
def plain_fields(draw: st.DrawFn) -> dict[str, object]:
    """The fields of every dict Chainflow builds, whatever its fees (domain/transactions/
    attempts.py): plain ints, a checksummed `to`, bytes `data`."""
    return {
        "chainId": draw(st.integers(min_value=1, max_value=2**63)),
        "nonce": draw(SMALL),
        "to": to_checksum_address(draw(st.binary(min_size=20, max_size=20))),
        "value": draw(UINT),
        "gas": draw(SMALL),
        "data": draw(st.binary(max_size=300)),
    }


async def assert_signed_as_eth_account(tx: dict[str, object]) -> None:
    """Our signer's bytes and hash for `tx` are eth-account's (RFC 6979: deterministic)."""
    expected = Account.sign_transaction(dict(tx), KEY_HEX)

    signed = await SIGNER.sign_transaction(tx)

    assert signed.raw == bytes(expected.raw_transaction)
    assert signed.hash == "0x" + bytes(expected.hash).hex()
