"""Local signer: a decrypted key held in memory, signing with eth-account."""

# eth-keys signs with CoinCurveECCBackend when coincurve imports, and silently falls back to
# a pure-Python backend about 10x slower otherwise (research/kms-hsm.md §5); eth-account does
# not depend on coincurve, so pyproject lists it. Verified in this venv (eth-account 0.14.0,
# eth-keys 0.8.0, coincurve 21.0.0): `eth_keys.backends.get_backend()` returns a
# CoinCurveECCBackend, and tests/unit/infra/signing/test_local.py::TestBackend guards it.

import secrets
from collections.abc import Mapping
from typing import Any, cast

import coincurve
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_keys.backends.coincurve import CoinCurveECCBackend
from eth_keys.datatypes import PrivateKey, Signature

from chainflow.core.types import Address, SecretBytes, TxHash
from chainflow.infra.metrics import SIGNER_SECONDS, SWITCH
from chainflow.infra.signing.keystore import (
    SECP256K1_ORDER,
    InvalidPrivateKey,
    validate_private_key,
)
from chainflow.infra.signing.signer import SignedTx
from chainflow.infra.signing.type2 import sign_type_2, type_2_fields

__all__ = ["LocalSigner", "address_of", "generate_private_key"]

_KEY_BYTES = 32
_SIGN_SECONDS = SIGNER_SECONDS.labels(backend="local")


def address_of(private_key: SecretBytes) -> Address:
    """Return the checksummed address of a key. Raises: InvalidPrivateKey."""
    return Address(_account_of(private_key).address)


def generate_private_key() -> SecretBytes:
    """Return a new key from the OS CSPRNG, in [1, n - 1]."""
    while True:
        candidate = secrets.token_bytes(_KEY_BYTES)
        # Out of range with probability ~2**-128; draw again rather than reduce (no bias).
        if 0 < int.from_bytes(candidate, "big") < SECP256K1_ORDER:
            return SecretBytes(candidate)


def _account_of(private_key: SecretBytes) -> LocalAccount:
    # Checked here because eth-account's own error misreports a zero or out-of-range key
    # as "must be exactly 32 bytes long, instead of 32 bytes".
    raw = private_key.reveal()
    if len(raw) != _KEY_BYTES:
        raise InvalidPrivateKey(f"private key must be 32 bytes, got {len(raw)}")
    validate_private_key(raw)
    account: LocalAccount = Account.from_key(raw)
    return account


class _OneKeyBackend(CoinCurveECCBackend):
    """eth-keys' coincurve backend holding coincurve's key object for one private key.

    The stock backend builds a coincurve PrivateKey for every signature, and that constructor
    derives the public key twice (full and x-only): more CPU than the signature itself in a
    profile of a draining worker. The signature is the same coincurve call, byte for byte
    (RFC 6979, so tests compare it with eth-account's own output).
    """

    def __init__(self, raw: bytes) -> None:
        super().__init__()
        self.curve_key = coincurve.PrivateKey(raw)

    def ecdsa_sign(self, msg_hash: bytes, private_key: PrivateKey) -> Signature:
        if private_key.to_bytes() != self.curve_key.secret:
            return super().ecdsa_sign(msg_hash, private_key)
        return Signature(self.curve_key.sign_recoverable(msg_hash, hasher=None), backend=self)

    def __repr__(self) -> str:
        return "_OneKeyBackend()"


class LocalSigner:
    """Signs with a key held in memory; its repr never shows the key."""

    __slots__ = ("_account", "_curve_key", "_key")

    kind = "local"

    def __init__(self, private_key: SecretBytes) -> None:
        self._account = _account_of(private_key)
        raw = private_key.reveal()
        backend = _OneKeyBackend(raw)
        self._curve_key = backend.curve_key
        # eth-account signs with a PrivateKey object as given (Account.sign_transaction).
        self._key = PrivateKey(raw, backend=backend)

    @property
    def address(self) -> Address:
        return Address(self._account.address)

    async def sign_transaction(self, tx: Mapping[str, object]) -> SignedTx:
        """Sign an EIP-1559 (type 2) or legacy tx dict; RFC 6979 nonces, low-s."""
        if not SWITCH.on:
            return self._sign(tx)
        with _SIGN_SECONDS.time():
            return self._sign(tx)

    def _sign(self, tx: Mapping[str, object]) -> SignedTx:
        fields = type_2_fields(tx)
        if fields is not None:  # the dicts Chainflow builds: see infra/signing/type2.py
            raw, tx_hash = sign_type_2(fields, self._sign_hash)
            return SignedTx(raw=raw, hash=TxHash("0x" + tx_hash.hex()))
        signed = Account.sign_transaction(cast(dict[str, Any], dict(tx)), self._key)
        raw = bytes(signed.raw_transaction)
        return SignedTx(raw=raw, hash=TxHash("0x" + bytes(signed.hash).hex()))

    def _sign_hash(self, msg_hash: bytes) -> bytes:
        signature: bytes = self._curve_key.sign_recoverable(msg_hash, hasher=None)
        return signature

    def __repr__(self) -> str:
        return f"LocalSigner(address={self.address})"

    __str__ = __repr__
