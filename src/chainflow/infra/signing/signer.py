"""The Signer protocol: local keys, PKCS#11 HSMs and cloud KMS all sign through it."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from chainflow.core.types import Address, TxHash

__all__ = ["SignedTx", "Signer"]


@dataclass(frozen=True)
class SignedTx:
    """Raw signed bytes, ready for eth_sendRawTransaction, and their keccak hash (0x hex)."""

    raw: bytes
    hash: TxHash


class Signer(Protocol):
    """Signs transactions for one address. Async so that HSM and KMS round trips fit.

    Invariants every implementation keeps (research/kms-hsm.md): `address` is known before the
    first signature, and the signature is low-s (EIP-2) and recovers to `address`.
    """

    kind: str  # "local"; later "pkcs11", "kms"

    @property
    def address(self) -> Address:
        """The EIP-55 checksummed address this signer signs for."""
        ...

    async def sign_transaction(self, tx: Mapping[str, object]) -> SignedTx:
        """Sign an EIP-1559 (type 2) or legacy tx dict in eth-account's field names."""
        ...
