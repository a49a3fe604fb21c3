"""Envelope encryption of private keys: AES-256-GCM, a data key per key, wrapped by a master key.

Layout of both blobs: 12-byte random nonce ‖ AES-GCM ciphertext with its 16-byte tag.
The private key's AAD is chosen by the caller (wallet id and address), so a ciphertext copied
to another row fails to decrypt; the data key's AAD is the same, prefixed, so a wrapped data
key cannot be swapped either. Crypto comes from `cryptography` only (DESIGN.md §9).
"""

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chainflow.core.errors import ConfigError, InvalidInput
from chainflow.core.types import SecretBytes

__all__ = [
    "SECP256K1_ORDER",
    "DecryptionFailed",
    "InvalidMasterKey",
    "InvalidPrivateKey",
    "MasterKey",
    "SealedKey",
    "rewrap",
    "seal",
    "unseal",
    "validate_private_key",
]

# n of secp256k1 (SEC 2 §2.4.1): a private key is an integer in [1, n - 1].
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

_NONCE_BYTES = 12  # the 96-bit nonce NIST SP 800-38D recommends for GCM
_KEY_BYTES = 32
_DEK_AAD_PREFIX = b"chainflow/dek/v1|"
_KEY_ID_LABEL = b"chainflow master key id v1"
_HEX_DIGITS = re.compile(r"[0-9a-fA-F]*")


class InvalidMasterKey(ConfigError):
    code = "invalid_master_key"


class DecryptionFailed(ConfigError):
    code = "decryption_failed"


class InvalidPrivateKey(InvalidInput):
    code = "invalid_private_key"


class MasterKey:
    """The key-encryption key. Its `key_id` names it without revealing it.

    It may carry the keys it replaced (`previous`): sealing always uses this key, unsealing
    picks whichever key the row names, so a row not yet re-wrapped by a rotation that was
    interrupted still decrypts.
    """

    __slots__ = ("_key_id", "_previous", "_secret")

    def __init__(self, secret: SecretBytes, previous: Sequence["MasterKey"] = ()) -> None:
        if len(secret) != _KEY_BYTES:
            raise InvalidMasterKey(
                f"invalid setting CHAINFLOW_MASTER_KEY: {len(secret)} bytes, need 32"
            )
        self._secret = secret
        digest = hmac.new(secret.reveal(), _KEY_ID_LABEL, hashlib.sha256).digest()
        self._key_id = digest[:8].hex()
        self._previous = tuple(key for key in previous if key.key_id != self._key_id)

    @classmethod
    def from_b64(cls, text: str, *, source: str = "setting CHAINFLOW_MASTER_KEY") -> "MasterKey":
        """Parse standard base64 of 32 bytes. Raises: InvalidMasterKey naming `source`, never
        echoing the text."""
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidMasterKey(f"invalid {source}: not valid base64") from None
        if len(raw) != _KEY_BYTES:
            raise InvalidMasterKey(f"invalid {source}: decodes to {len(raw)} bytes, need 32")
        return cls(SecretBytes(raw))

    @classmethod
    def generate(cls) -> "MasterKey":
        """Make a new random master key from the OS CSPRNG."""
        return cls(SecretBytes(AESGCM.generate_key(bit_length=256)))

    def with_previous(self, *keys: "MasterKey") -> "MasterKey":
        """This key, also able to unseal rows wrapped by `keys` (and by their own previous)."""
        older = [k for key in keys for k in (key.only(), *key.previous)]
        return MasterKey(self._secret, [*self._previous, *older])

    def only(self) -> "MasterKey":
        """This key without its previous keys."""
        return MasterKey(self._secret)

    @property
    def secret(self) -> SecretBytes:
        return self._secret

    @property
    def key_id(self) -> str:
        """16 hex digits of HMAC-SHA256(key, label): names the key, reveals nothing of it."""
        return self._key_id

    @property
    def previous(self) -> tuple["MasterKey", ...]:
        return self._previous

    @property
    def known_ids(self) -> frozenset[str]:
        """The ids of every key this one can unseal with: itself and its previous keys."""
        return frozenset([self._key_id, *(key.key_id for key in self._previous)])

    def for_id(self, key_id: str) -> "MasterKey":
        """The key named `key_id`, this one or a previous one. Raises: DecryptionFailed."""
        for key in (self, *self._previous):
            if key.key_id == key_id:
                return key
        ids = [self._key_id, *(key.key_id for key in self._previous)]
        configured = f"key is {ids[0]}" if len(ids) == 1 else f"keys are {', '.join(ids)}"
        raise DecryptionFailed(f"sealed under master key {key_id}, configured {configured}")

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self._key_id})"

    __str__ = __repr__


@dataclass(frozen=True)
class SealedKey:
    """A private key at rest: both blobs are nonce ‖ AES-GCM ciphertext ‖ tag."""

    ciphertext: bytes
    wrapped_data_key: bytes
    master_key_id: str

    def __repr__(self) -> str:
        return f"SealedKey(master_key_id={self.master_key_id})"


def _encrypt(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _decrypt(key: bytes, blob: bytes, aad: bytes, *, what: str) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], aad)
    except (InvalidTag, ValueError):
        # ValueError: a blob too short to hold a nonce. Either way, say which blob, not its bytes.
        raise DecryptionFailed(
            f"{what} failed authentication (tampered, moved to another row, or wrong key)"
        ) from None


def _wrap(data_key: bytes, *, master: MasterKey, associated_data: bytes) -> bytes:
    return _encrypt(master.secret.reveal(), data_key, _DEK_AAD_PREFIX + associated_data)


def _unwrap(sealed: SealedKey, *, master: MasterKey, associated_data: bytes) -> bytes:
    key = master.for_id(sealed.master_key_id)
    aad = _DEK_AAD_PREFIX + associated_data
    return _decrypt(key.secret.reveal(), sealed.wrapped_data_key, aad, what="wrapped data key")


def seal(private_key: SecretBytes, *, master: MasterKey, associated_data: bytes) -> SealedKey:
    """Encrypt a private key under a fresh data key, and wrap that under the master key."""
    data_key = AESGCM.generate_key(bit_length=256)
    return SealedKey(
        ciphertext=_encrypt(data_key, private_key.reveal(), associated_data),
        wrapped_data_key=_wrap(data_key, master=master, associated_data=associated_data),
        master_key_id=master.key_id,
    )


def unseal(sealed: SealedKey, *, master: MasterKey, associated_data: bytes) -> SecretBytes:
    """Decrypt a sealed key in memory. Raises: DecryptionFailed; nothing partial is returned."""
    data_key = _unwrap(sealed, master=master, associated_data=associated_data)
    plaintext = _decrypt(data_key, sealed.ciphertext, associated_data, what="encrypted key")
    return SecretBytes(plaintext)


def rewrap(
    sealed: SealedKey, *, old: MasterKey, new: MasterKey, associated_data: bytes
) -> SealedKey:
    """Re-wrap the data key under `new`; the ciphertext is unchanged (master-key rotation).

    `old` unwraps with whichever of its keys (itself or a previous one) the row names.
    """
    data_key = _unwrap(sealed, master=old, associated_data=associated_data)
    return SealedKey(
        ciphertext=sealed.ciphertext,
        wrapped_data_key=_wrap(data_key, master=new, associated_data=associated_data),
        master_key_id=new.key_id,
    )


def validate_private_key(raw: str | bytes) -> SecretBytes:
    """Parse a secp256k1 private key: 64 hex digits (0x optional, whitespace ignored) or 32 bytes.

    Raises:
        InvalidPrivateKey: saying what is wrong; the message never contains the input.
    """
    if isinstance(raw, bytes) and len(raw) == _KEY_BYTES:
        return _check_range(raw)
    digits = _hex_digits_of(raw)
    if not digits:
        raise InvalidPrivateKey("private key is empty")
    if not _HEX_DIGITS.fullmatch(digits):
        raise InvalidPrivateKey("private key must be hex (64 hex digits, 0x prefix optional)")
    if len(digits) < 2 * _KEY_BYTES:
        raise InvalidPrivateKey(f"private key is too short: {len(digits)} hex digits, need 64")
    if len(digits) > 2 * _KEY_BYTES:
        raise InvalidPrivateKey(f"private key is too long: {len(digits)} hex digits, need 64")
    return _check_range(bytes.fromhex(digits))


def _hex_digits_of(raw: str | bytes) -> str:
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    text = text.strip()
    return text[2:] if text[:2].lower() == "0x" else text


def _check_range(key: bytes) -> SecretBytes:
    value = int.from_bytes(key, "big")
    if value == 0:
        raise InvalidPrivateKey("private key is zero")
    if value >= SECP256K1_ORDER:
        raise InvalidPrivateKey("private key is not below the secp256k1 group order")
    return SecretBytes(key)
