"""The Signer protocol: local keys, PKCS#11 HSMs and cloud KMS all sign through it."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol

from chainflow.core.errors import Unavailable
from chainflow.core.types import Address, TxHash
from chainflow.infra.signing.ecdsa import RecoverableSignature

__all__ = [
    "HEALTHY",
    "KeyUnreadable",
    "SignatureFailed",
    "SignedTx",
    "Signer",
    "SignerHealth",
    "SignerUnavailable",
]


class SignerUnavailable(Unavailable):
    """The signing backend cannot be reached (token removed, module failing, KMS down).

    Nothing was signed: the caller keeps the nonce it was about to use, and tries again later.
    """

    code: ClassVar[str] = "signer_unavailable"
    title: ClassVar[str] = "Signer unavailable"


class SignatureFailed(SignerUnavailable):
    """The wallet's signer made, or its backend returned, a signature that is not a valid one
    for the wallet's key (ecdsa.BadSignature: a local key's signature failed its check, an HSM
    or KMS answered garbage or signed with another key).

    Handled as an unavailable signer, under its own code: nothing was signed, only this
    wallet's lane waits (no nonce taken) and it is tried again once a probe passes. It is a
    fault to look into (memory, CPU, token, a KMS alias moved), not an outage.
    """

    code: ClassVar[str] = "bad_signature"
    title: ClassVar[str] = "Bad signature"


class KeyUnreadable(SignerUnavailable):
    """The wallet's locally sealed key cannot be decrypted with the configured master key: its
    row was tampered with, its blobs were moved from another row (the AAD no longer matches),
    it holds no sealed key, or the master key that wrapped it is not configured.

    Handled as an unavailable signer, under its own code: only this wallet's lane waits (no
    nonce taken). No probe can see it mend: the next try reads the row again, and a row that
    changed (repaired by an operator) is tried at once (`Signers.unreadable`).
    """

    code: ClassVar[str] = "key_unreadable"
    title: ClassVar[str] = "Key unreadable"


@dataclass(frozen=True)
class SignedTx:
    """Raw signed bytes, ready for eth_sendRawTransaction, and their keccak hash (0x hex)."""

    raw: bytes
    hash: TxHash


@dataclass(frozen=True)
class SignerHealth:
    """Whether a signer's backend can sign now, as far as a cheap probe tells; `detail` says
    why not (never a PIN, a credential or an AWS error's message)."""

    ok: bool
    detail: str | None = None


HEALTHY = SignerHealth(ok=True)


class Signer(Protocol):
    """Signs for one address. Async so that HSM and KMS round trips fit.

    Invariants every implementation keeps (research/kms-hsm.md): `address` and `public_key` are
    known before the first signature; every signature goes through `ecdsa.finish`, so it is
    low-s (EIP-2) and recovers to `address`; a digest that is not 32 bytes is refused.
    """

    kind: str  # "local", "pkcs11", "aws_kms"

    @property
    def address(self) -> Address:
        """The EIP-55 checksummed address this signer signs for."""
        ...

    @property
    def key_ref(self) -> str | None:
        """Where the backend keeps the key (token label, KMS key id); None for local keys."""
        ...

    @property
    def public_key(self) -> bytes:
        """The uncompressed public key without its 0x04 prefix (X || Y, 64 bytes)."""
        ...

    async def sign_digest(self, digest: bytes) -> RecoverableSignature:
        """Sign a 32-byte digest. Raises: WrongDigestLength, SignerUnavailable."""
        ...

    async def sign_transaction(self, tx: Mapping[str, object]) -> SignedTx:
        """Sign an EIP-1559 (type 2) or legacy tx dict in eth-account's field names.

        Raises: SignerUnavailable.
        """
        ...

    async def health(self) -> SignerHealth:
        """Probe the backend cheaply and within a short time (never raises): local keys are
        always healthy; a PKCS#11 token is asked for the key's object; KMS for the key's
        public key, the answer kept a few seconds."""
        ...
