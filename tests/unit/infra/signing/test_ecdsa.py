"""The shared post-processing every backend's signature goes through (infra/signing/ecdsa.py)."""

import asyncio

import coincurve
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account
from eth_utils.crypto import keccak

from chainflow.core.types import SecretBytes
from chainflow.infra.signing.ecdsa import (
    SECP256K1_N,
    BadSignature,
    WrongCurve,
    WrongDigestLength,
    address_of_public_key,
    finish,
    from_recoverable,
    parse_signature,
    public_key_from_point,
    public_key_from_spki,
)
from chainflow.infra.signing.local import LocalSigner

KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
ADDRESS = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
PRIVATE = coincurve.PrivateKey(KEY)
PUBLIC = PRIVATE.public_key.format(compressed=False)[1:]
DIGESTS = [keccak(i.to_bytes(4, "big")) for i in range(64)]


def raw_signature(digest: bytes) -> tuple[int, int]:
    signature = PRIVATE.sign_recoverable(digest, hasher=None)
    return int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")


def as_raw(r: int, s: int) -> bytes:
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def recovers(digest: bytes, r: int, s: int, recovery_id: int) -> str:
    return str(Account._recover_hash(digest, vrs=(recovery_id + 27, r, s)))


class TestFinish:
    @pytest.mark.parametrize("digest", DIGESTS[:16])
    def test_a_high_s_signature_is_made_low_and_recovers(self, digest: bytes) -> None:
        r, s = raw_signature(digest)
        high = SECP256K1_N - s  # coincurve signs low-s; the other half of every HSM's output
        assert high > SECP256K1_N // 2
        signature = finish(digest, as_raw(r, high), PUBLIC)
        assert signature.s == s
        assert recovers(digest, signature.r, signature.s, signature.recovery_id) == ADDRESS

    def test_both_recovery_ids_occur_and_each_recovers(self) -> None:
        ids = set()
        for digest in DIGESTS:
            signature = finish(digest, as_raw(*raw_signature(digest)), PUBLIC)
            assert recovers(digest, signature.r, signature.s, signature.recovery_id) == ADDRESS
            ids.add(signature.recovery_id)
        assert ids == {0, 1}

    def test_der_signatures_of_any_length_are_decoded(self) -> None:
        lengths = set()
        for digest in DIGESTS:
            r, s = raw_signature(digest)
            for candidate in (s, SECP256K1_N - s):
                der = encode_dss_signature(r, candidate)
                lengths.add(len(der))
                assert finish(digest, der, PUBLIC).s == s
        assert len(lengths) > 1  # minimal INTEGERs: a fixed offset would break

    def test_an_openssl_signature_over_the_digest_recovers(self) -> None:
        # Random k, as an HSM signs: compared by recovered address, never by bytes.
        key = ec.derive_private_key(int.from_bytes(KEY, "big"), ec.SECP256K1())
        digest = DIGESTS[0]
        der = key.sign(digest, ec.ECDSA(Prehashed(SHA256())))
        signature = finish(digest, der, PUBLIC)
        assert signature.s <= SECP256K1_N // 2
        assert recovers(digest, signature.r, signature.s, signature.recovery_id) == ADDRESS

    @pytest.mark.parametrize("length", [0, 20, 31, 33, 64])
    def test_a_digest_of_the_wrong_length_is_refused(self, length: int) -> None:
        r, s = raw_signature(DIGESTS[0])
        with pytest.raises(WrongDigestLength):
            finish(bytes(length), as_raw(r, s), PUBLIC)

    def test_a_signature_by_another_key_is_refused(self) -> None:
        other = coincurve.PrivateKey().sign_recoverable(DIGESTS[0], hasher=None)
        with pytest.raises(BadSignature):
            finish(DIGESTS[0], other[:64], PUBLIC)

    def test_a_signature_of_another_digest_is_refused(self) -> None:
        with pytest.raises(BadSignature):
            finish(DIGESTS[1], as_raw(*raw_signature(DIGESTS[0])), PUBLIC)

    @pytest.mark.parametrize(
        "signature",
        [as_raw(0, 1), as_raw(1, 0), as_raw(SECP256K1_N, 1), b"\x30\x02\x01", b""],
        ids=["r0", "s0", "r=n", "bad-der", "empty"],
    )
    def test_malformed_signatures_are_refused(self, signature: bytes) -> None:
        with pytest.raises(BadSignature):
            finish(DIGESTS[0], signature, PUBLIC)

    def test_parse_reads_raw_r_s_big_endian(self) -> None:
        assert parse_signature(as_raw(5, 7)) == (5, 7)


class TestPublicKeys:
    def test_a_der_wrapped_ec_point_is_unwrapped(self) -> None:
        point = b"\x04" + PUBLIC
        assert public_key_from_point(b"\x04\x41" + point) == PUBLIC

    def test_a_raw_ec_point_is_used_as_is(self) -> None:
        assert public_key_from_point(b"\x04" + PUBLIC) == PUBLIC

    def test_a_compressed_point_is_decompressed(self) -> None:
        compressed = PRIVATE.public_key.format(compressed=True)
        assert public_key_from_point(compressed) == PUBLIC
        assert public_key_from_point(b"\x04\x21" + compressed) == PUBLIC

    def test_a_point_off_the_curve_is_refused(self) -> None:
        with pytest.raises(WrongCurve):
            public_key_from_point(b"\x04" + bytes(64))

    def test_spki_of_secp256k1_gives_the_address(self) -> None:
        key = ec.derive_private_key(int.from_bytes(KEY, "big"), ec.SECP256K1())
        der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        assert address_of_public_key(public_key_from_spki(der)) == ADDRESS

    def test_spki_of_another_curve_is_refused(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        with pytest.raises(WrongCurve):
            public_key_from_spki(der)


class TestFromRecoverable:
    def test_libsecp256k1s_id_is_the_one_finish_finds_for_both_ids(self) -> None:
        ids = set()
        for digest in DIGESTS:
            signature = from_recoverable(digest, PRIVATE.sign_recoverable(digest, hasher=None))
            assert signature == finish(digest, as_raw(signature.r, signature.s), PUBLIC)
            assert recovers(digest, signature.r, signature.s, signature.recovery_id) == ADDRESS
            ids.add(signature.recovery_id)
        assert ids == {0, 1}

    @pytest.mark.parametrize("digest", DIGESTS[:8])
    def test_a_high_s_is_made_low_with_its_parity_flipped(self, digest: bytes) -> None:
        made = PRIVATE.sign_recoverable(digest, hasher=None)
        r, s = raw_signature(digest)
        high = as_raw(r, SECP256K1_N - s) + bytes([made[64] ^ 1])
        signature = from_recoverable(digest, high)
        assert (signature.s, signature.recovery_id) == (s, made[64])
        assert recovers(digest, signature.r, signature.s, signature.recovery_id) == ADDRESS

    @pytest.mark.parametrize(
        "signature",
        [b"", b"\x01" * 64, b"\x01" * 64 + b"\x02", b"\x00" * 64 + b"\x00", b"\x01" * 66],
    )
    def test_malformed_signatures_are_refused(self, signature: bytes) -> None:
        with pytest.raises(BadSignature):
            from_recoverable(DIGESTS[0], signature)

    def test_a_digest_of_the_wrong_length_is_refused(self) -> None:
        with pytest.raises(WrongDigestLength):
            from_recoverable(b"\x01" * 31, PRIVATE.sign_recoverable(DIGESTS[0], hasher=None))


class TestLocalSignerThroughFinish:
    def test_sign_digest_refuses_a_wrong_length(self) -> None:
        signer = LocalSigner(SecretBytes(KEY))
        with pytest.raises(WrongDigestLength):
            asyncio.run(signer.sign_digest(b"\x01" * 31))

    def test_sign_digest_recovers_to_the_address(self) -> None:
        signer = LocalSigner(SecretBytes(KEY))
        signature = asyncio.run(signer.sign_digest(DIGESTS[3]))
        assert recovers(DIGESTS[3], signature.r, signature.s, signature.recovery_id) == ADDRESS

    def test_every_signature_recovers_to_the_address_with_either_id(self) -> None:
        signer = LocalSigner(SecretBytes(KEY))
        ids = set()
        for digest in DIGESTS:
            signature = asyncio.run(signer.sign_digest(digest))
            assert signature.s <= SECP256K1_N // 2
            assert recovers(digest, signature.r, signature.s, signature.recovery_id) == ADDRESS
            ids.add(signature.recovery_id)
        assert ids == {0, 1}
        assert signer.public_key == PUBLIC
