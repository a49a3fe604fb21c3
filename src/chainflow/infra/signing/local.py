"""Local signer: a decrypted key held in memory, signing with coincurve."""

# eth-keys signs with CoinCurveECCBackend when coincurve imports, and silently falls back to
# a pure-Python backend about 10x slower otherwise (research/kms-hsm.md §5); eth-account does
# not depend on coincurve, so pyproject lists it. Verified in this venv (eth-account 0.14.0,
# eth-keys 0.8.0, coincurve 21.0.0): `eth_keys.backends.get_backend()` returns a
# CoinCurveECCBackend, and tests/unit/infra/signing/test_local.py::TestBackend guards it.

import secrets
import time
from collections.abc import Mapping

import coincurve
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from eth_keys.datatypes import PrivateKey

from chainflow.core.types import Address, SecretBytes
from chainflow.infra.metrics import SIGNER_SECONDS, SWITCH
from chainflow.infra.signing.ecdsa import (
    BadSignature,
    RecoverableSignature,
    from_recoverable,
    require_digest,
)
from chainflow.infra.signing.keystore import (
    SECP256K1_ORDER,
    InvalidPrivateKey,
    validate_private_key,
)
from chainflow.infra.signing.signer import HEALTHY, SignedTx, SignerHealth
from chainflow.infra.signing.transactions import sign_transaction_with

__all__ = ["LocalSigner", "address_of", "generate_private_key"]

_KEY_BYTES = 32
_SIGN_SECONDS = SIGNER_SECONDS.cell("local")


def address_of(private_key: SecretBytes) -> Address:
    """Return the checksummed address of a key. Raises: InvalidPrivateKey."""
    return _address_of(private_key)


def generate_private_key() -> SecretBytes:
    """Return a new key from the OS CSPRNG, in [1, n - 1]."""
    while True:
        candidate = secrets.token_bytes(_KEY_BYTES)
        # Out of range with probability ~2**-128; draw again rather than reduce (no bias).
        if 0 < int.from_bytes(candidate, "big") < SECP256K1_ORDER:
            return SecretBytes(candidate)


def _address_of(private_key: SecretBytes) -> Address:
    # Checked here because eth-keys' own error misreports a zero or out-of-range key
    # as "must be exactly 32 bytes long, instead of 32 bytes".
    raw = private_key.reveal()
    if len(raw) != _KEY_BYTES:
        raise InvalidPrivateKey(f"private key must be 32 bytes, got {len(raw)}")
    validate_private_key(raw)
    # What eth-account's `Account.from_key(raw).address` is, without importing eth-account
    # (its import costs every process ~0.5 s: infra/signing/transactions.py).
    return Address(PrivateKey(raw).public_key.to_checksum_address())


class LocalSigner:
    """Signs with a key held in memory; its repr never shows the key.

    Its signatures are made by libsecp256k1 with the key itself, which returns low s and the
    recovery id: `ecdsa.from_recoverable` takes them as they are (a remote backend's go
    through `ecdsa.finish`, which searches the id by recovering against the public key: two
    recoveries cost 2.5x the signature, 8% of a draining worker's CPU). Each signature is
    verified against the wallet's public key before it leaves (~33 us, about the signature's
    own cost): with deterministic nonces, one faulty signature (a flipped bit in memory or the
    CPU) beside the correct one of the same digest gives the private key away, so a signature
    that does not verify is never sent or stored.
    """

    __slots__ = ("_address", "_curve_key", "_curve_public", "_public_key")

    kind = "local"

    def __init__(self, private_key: SecretBytes) -> None:
        self._address = _address_of(private_key)
        raw = private_key.reveal()
        # One coincurve key per wallet: building it derives the public key, which cost more
        # CPU than the signature itself when done per signature (a draining worker's profile).
        self._curve_key = coincurve.PrivateKey(raw)
        self._curve_public: coincurve.PublicKey = self._curve_key.public_key
        self._public_key: bytes = self._curve_public.format(compressed=False)[1:]

    @property
    def address(self) -> Address:
        return self._address

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def key_ref(self) -> str | None:
        return None

    async def sign_digest(self, digest: bytes) -> RecoverableSignature:
        """RFC 6979 nonces, so equal digests give equal signatures.

        Raises: WrongDigestLength; BadSignature (the signature made does not verify).
        """
        require_digest(digest)
        signature: bytes = self._curve_key.sign_recoverable(digest, hasher=None)
        result = from_recoverable(digest, signature)
        der = encode_dss_signature(result.r, result.s)
        if not self._curve_public.verify(der, digest, hasher=None):
            raise BadSignature("a signature made with the wallet's key did not verify")
        return result

    async def sign_transaction(self, tx: Mapping[str, object]) -> SignedTx:
        """Sign an EIP-1559 (type 2) or legacy tx dict; RFC 6979 nonces, low-s."""
        if not SWITCH.on:
            return await sign_transaction_with(tx, self.sign_digest)
        started = time.perf_counter()
        try:
            return await sign_transaction_with(tx, self.sign_digest)
        finally:
            _SIGN_SECONDS.observe(time.perf_counter() - started)

    async def health(self) -> SignerHealth:
        """A key in memory is always there."""
        return HEALTHY

    def __repr__(self) -> str:
        return f"LocalSigner(address={self.address})"

    __str__ = __repr__
