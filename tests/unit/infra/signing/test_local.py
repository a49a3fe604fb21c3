"""The local signer: address derivation, key generation, signing that recovers, redaction."""

import base64

import coincurve
import eth_keys.backends
import pytest
from eth_account import Account
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes

from chainflow.core.types import SecretBytes
from chainflow.infra.signing.ecdsa import BadSignature
from chainflow.infra.signing.keystore import SECP256K1_ORDER, InvalidPrivateKey
from chainflow.infra.signing.local import LocalSigner, address_of, generate_private_key
from chainflow.infra.signing.signer import HEALTHY, Signer
from tests.support.faulty_signer import FaultyKey

# The example key from eth-account's documentation, and its published address.
KEY_HEX = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
KEY = SecretBytes(bytes.fromhex(KEY_HEX))
ADDRESS = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
TYPE_2_TX: dict[str, object] = {
    "type": 2,
    "chainId": 31337,
    "nonce": 7,
    "to": "0x000000000000000000000000000000000000dEaD",
    "value": 1,
    "gas": 21000,
    "maxFeePerGas": 2_000_000_000,
    "maxPriorityFeePerGas": 1_000_000_000,
    "data": b"",
}
LEGACY_TX: dict[str, object] = {
    "chainId": 31337,
    "nonce": 7,
    "to": "0x000000000000000000000000000000000000dEaD",
    "value": 1,
    "gas": 21000,
    "gasPrice": 1_000_000_000,
    "data": b"",
}


def key_material_in(text: str, key: bytes) -> bool:
    forms = [key.hex(), key.hex().upper(), base64.b64encode(key).decode()]
    return any(form in text for form in forms)


class TestBackend:
    def test_eth_keys_uses_coincurve(self) -> None:
        backend = eth_keys.backends.get_backend()
        assert type(backend).__name__ == "CoinCurveECCBackend"


class TestAddressOf:
    def test_returns_the_published_checksummed_address(self) -> None:
        assert address_of(KEY) == ADDRESS

    def test_returns_the_eip55_form(self) -> None:
        address = address_of(generate_private_key())
        assert str(address) == str(to_checksum_address(address.lower()))

    @pytest.mark.parametrize(
        ("raw", "message"),
        [
            (bytes(32), "private key is zero"),
            (SECP256K1_ORDER.to_bytes(32, "big"), "not below the secp256k1 group order"),
            (bytes.fromhex(KEY_HEX)[:31], "must be 32 bytes, got 31"),
            (KEY_HEX.encode(), "must be 32 bytes, got 64"),
        ],
        ids=["zero", "order", "short", "hex-text"],
    )
    def test_rejects_an_invalid_key(self, raw: bytes, message: str) -> None:
        with pytest.raises(InvalidPrivateKey, match=message) as caught:
            address_of(SecretBytes(raw))
        assert not key_material_in(str(caught.value), raw)


class TestGeneratePrivateKey:
    def test_returns_a_32_byte_key_in_range(self) -> None:
        key = generate_private_key().reveal()
        assert len(key) == 32
        assert 0 < int.from_bytes(key, "big") < SECP256K1_ORDER

    def test_returns_a_new_key_each_call(self) -> None:
        keys = {generate_private_key().reveal() for _ in range(16)}
        assert len(keys) == 16


class TestLocalSigner:
    def test_is_a_signer_of_kind_local(self) -> None:
        signer: Signer = LocalSigner(KEY)
        assert signer.kind == "local"

    def test_address_is_the_keys_address(self) -> None:
        assert LocalSigner(KEY).address == ADDRESS

    async def test_is_always_healthy(self) -> None:
        assert await LocalSigner(KEY).health() == HEALTHY

    async def test_type_2_tx_recovers_to_the_address(self) -> None:
        signed = await LocalSigner(KEY).sign_transaction(TYPE_2_TX)
        assert signed.raw[0] == 2
        assert Account.recover_transaction(signed.raw) == ADDRESS

    async def test_legacy_tx_recovers_to_the_address(self) -> None:
        signed = await LocalSigner(KEY).sign_transaction(LEGACY_TX)
        assert signed.raw[0] >= 0xC0  # an RLP list, no type byte (EIP-2718)
        assert Account.recover_transaction(signed.raw) == ADDRESS

    async def test_hash_is_the_0x_keccak_of_the_raw_bytes(self) -> None:
        signed = await LocalSigner(KEY).sign_transaction(TYPE_2_TX)
        assert signed.hash == "0x" + keccak(signed.raw).hex()

    @pytest.mark.parametrize("tx", [TYPE_2_TX, LEGACY_TX], ids=["type-2", "legacy"])
    async def test_bytes_are_eth_accounts_own(self, tx: dict[str, object]) -> None:
        # RFC 6979 signatures are deterministic: the signer's one-key backend must give
        # exactly what eth-account gives with its stock backend.
        expected = Account.sign_transaction(dict(tx), KEY_HEX)

        signed = await LocalSigner(KEY).sign_transaction(tx)

        assert signed.raw == bytes(expected.raw_transaction)

    async def test_signs_for_its_own_key_only(self) -> None:
        other = generate_private_key()
        signed = await LocalSigner(other).sign_transaction(TYPE_2_TX)

        recovered = Account.recover_transaction(signed.raw)

        assert recovered == address_of(other)

    async def test_signature_is_low_s(self) -> None:
        # EIP-2: nodes reject s > n/2; the PKCS#11 and KMS signers must match this.
        for nonce in range(8):
            signed = await LocalSigner(KEY).sign_transaction({**TYPE_2_TX, "nonce": nonce})
            _, _, s = TypedTransaction.from_bytes(HexBytes(signed.raw)).vrs()
            assert s <= SECP256K1_ORDER // 2

    async def test_does_not_change_the_callers_dict(self) -> None:
        tx = dict(TYPE_2_TX)
        await LocalSigner(KEY).sign_transaction(tx)
        assert tx == TYPE_2_TX

    def test_repr_and_str_hide_the_key(self) -> None:
        signer = LocalSigner(KEY)
        for text in (repr(signer), str(signer), f"{signer}", repr([signer])):
            assert not key_material_in(text, KEY.reveal())
            assert ADDRESS in text

    def test_rejects_an_out_of_range_key(self) -> None:
        with pytest.raises(InvalidPrivateKey, match="private key is zero"):
            LocalSigner(SecretBytes(bytes(32)))


class TestFaultySignature:
    async def test_a_signature_that_does_not_verify_never_leaves_the_signer(self) -> None:
        signer = LocalSigner(KEY)
        signer._curve_key = FaultyKey(coincurve.PrivateKey(KEY.reveal()))  # type: ignore[assignment]

        with pytest.raises(BadSignature, match="did not verify") as caught:
            await signer.sign_transaction(TYPE_2_TX)

        assert not key_material_in(str(caught.value), KEY.reveal())

    async def test_a_sound_signature_passes_the_check(self) -> None:
        signed = await LocalSigner(KEY).sign_digest(keccak(b"chainflow"))
        assert signed.recovery_id in (0, 1)
