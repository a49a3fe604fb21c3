"""Turn any backend's secp256k1 signature into an Ethereum one, and check it before use.

HSMs and KMS return DER (AWS, GCP) or raw fixed-width r || s (PKCS#11 CKM_ECDSA), about half
of them high-s, and never a recovery id (research/kms-hsm.md, pitfalls 1-4). Every signer goes
through `finish`: the digest must be 32 bytes (SoftHSM truncates other lengths silently), s is
made low (EIP-2; nodes reject high-s), s is normalised *before* the recovery id is searched
(flipping s flips the parity), and the id is found by recovering against the key cached at
binding, because a wrong id silently recovers some other valid address.
"""

from dataclasses import dataclass

import coincurve
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from chainflow.core.types import Address

__all__ = [
    "DIGEST_BYTES",
    "SECP256K1_N",
    "BadSignature",
    "RecoverableSignature",
    "WrongCurve",
    "WrongDigestLength",
    "address_of_public_key",
    "finish",
    "from_recoverable",
    "parse_signature",
    "public_key_from_point",
    "public_key_from_spki",
    "require_digest",
]

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = SECP256K1_N // 2
DIGEST_BYTES = 32
_RAW_SIGNATURE_BYTES = 64
_PUBLIC_KEY_BYTES = 64  # X || Y, no 0x04 prefix


class BadSignature(ValueError):
    """A backend returned something that is not a usable signature for the wallet's key."""


class WrongDigestLength(ValueError):
    """Only 32-byte digests are signed: the backend would truncate or hash anything else."""


class WrongCurve(ValueError):
    """A key that is not secp256k1 cannot sign Ethereum transactions."""


@dataclass(frozen=True)
class RecoverableSignature:
    """r, s (low) and the recovery id (0 or 1) that recovers the wallet's key."""

    r: int
    s: int
    recovery_id: int

    def to_bytes(self) -> bytes:
        """65 bytes r || s || recovery id, as coincurve's sign_recoverable returns them."""
        return self.r.to_bytes(32, "big") + self.s.to_bytes(32, "big") + bytes([self.recovery_id])


def require_digest(digest: bytes) -> None:
    """Raises: WrongDigestLength."""
    if len(digest) != DIGEST_BYTES:
        raise WrongDigestLength(f"a digest must be {DIGEST_BYTES} bytes, got {len(digest)}")


def parse_signature(signature: bytes) -> tuple[int, int]:
    """(r, s) from raw fixed-width r || s (64 bytes) or DER ECDSA-Sig-Value (anything else;
    DER INTEGERs are minimal, so its length varies and must never be sliced).

    Raises: BadSignature.
    """
    if len(signature) == _RAW_SIGNATURE_BYTES:
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
    else:
        try:
            r, s = decode_dss_signature(signature)
        except ValueError as exc:
            raise BadSignature(f"not a DER or 64-byte signature ({len(signature)} bytes)") from exc
    if not (0 < r < SECP256K1_N and 0 < s < SECP256K1_N):
        raise BadSignature("r or s out of range")
    return r, s


def finish(digest: bytes, signature: bytes, public_key: bytes) -> RecoverableSignature:
    """The low-s Ethereum signature of `digest`, checked to recover to `public_key` (64 bytes).

    Raises:
        WrongDigestLength: the digest is not 32 bytes.
        BadSignature: undecodable, out of range, or recovering to no id with this key.
    """
    require_digest(digest)
    r, s = parse_signature(signature)
    if s > _HALF_N:
        s = SECP256K1_N - s
    body = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    for recovery_id in (0, 1):
        if _recover(body + bytes([recovery_id]), digest) == public_key:
            return RecoverableSignature(r=r, s=s, recovery_id=recovery_id)
    # Ids 2 and 3 (R.x >= n) have probability ~2**-128: treated as a bad signature.
    raise BadSignature("the signature does not recover to the wallet's public key")


def from_recoverable(digest: bytes, signature65: bytes) -> RecoverableSignature:
    """The Ethereum signature of `digest` from libsecp256k1's own recoverable signature
    (coincurve's `sign_recoverable` with the wallet's private key: r || s || recovery id).

    The library computed the recovery id from the nonce point it signed with, so no
    recovery is tried: `finish`'s search (up to two public-key recoveries, 2.5x the CPU of
    the signature itself) exists for backends that return no id. s is low already (the
    library normalises it); a high s would be flipped with its parity all the same.

    Raises: WrongDigestLength, BadSignature (not 65 bytes, r or s out of range, id not 0/1).
    """
    require_digest(digest)
    if len(signature65) != _RAW_SIGNATURE_BYTES + 1 or signature65[64] > 1:
        raise BadSignature("not a 65-byte recoverable signature with recovery id 0 or 1")
    r, s = parse_signature(signature65[:64])
    recovery_id = signature65[64]
    if s > _HALF_N:
        s, recovery_id = SECP256K1_N - s, recovery_id ^ 1
    return RecoverableSignature(r=r, s=s, recovery_id=recovery_id)


def _recover(signature65: bytes, digest: bytes) -> bytes | None:
    try:
        key = coincurve.PublicKey.from_signature_and_message(signature65, digest, hasher=None)
    except ValueError:
        return None
    recovered: bytes = key.format(compressed=False)[1:]
    return recovered


def public_key_from_point(point: bytes) -> bytes:
    """The 64-byte X || Y of a PKCS#11 CKA_EC_POINT: a DER OCTET STRING on SoftHSM (67 bytes,
    04 41 04 ...), raw on some tokens (65 bytes, also starting 04), or compressed (33 / 35).
    Decided by length, never by the first byte (research/kms-hsm.md pitfall 6).

    Raises: WrongCurve (not a point on secp256k1).
    """
    if len(point) in (67, 35) and point[0] == 0x04 and point[1] == len(point) - 2:
        point = point[2:]
    try:
        key = coincurve.PublicKey(point)
    except ValueError as exc:
        raise WrongCurve("the key's public point is not on secp256k1") from exc
    raw: bytes = key.format(compressed=False)[1:]
    return raw


def public_key_from_spki(der: bytes) -> bytes:
    """The 64-byte X || Y of a DER SubjectPublicKeyInfo (AWS / GCP), its curve checked.

    Raises: WrongCurve.
    """
    try:
        key = load_der_public_key(der)
    except (ValueError, TypeError) as exc:
        raise WrongCurve("not a DER SubjectPublicKeyInfo") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256K1):
        raise WrongCurve("the key is not on secp256k1")
    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)[1:]


def address_of_public_key(public_key: bytes) -> Address:
    """keccak(X || Y)[-20:], checksummed."""
    if len(public_key) != _PUBLIC_KEY_BYTES:
        raise WrongCurve(f"a public key must be {_PUBLIC_KEY_BYTES} bytes")
    return Address(to_checksum_address(keccak(public_key)[-20:]))
