"""What every signer whose key stays in a backend (HSM token, KMS) shares: the public key
read once, the address derived from it, and one path from the backend's raw signature to a
checked Ethereum one (`ecdsa.finish`)."""

from typing import Any

from chainflow.core.types import Address
from chainflow.infra.signing.ecdsa import (
    RecoverableSignature,
    address_of_public_key,
    finish,
    require_digest,
)
from chainflow.infra.signing.signer import SignedTx, SignerHealth
from chainflow.infra.signing.transactions import sign_transaction_with

__all__ = ["RemoteSigner"]


class RemoteSigner:
    """A Signer for one key of a backend; subclasses say how the backend signs a digest."""

    kind = "remote"

    def __init__(self, key_ref: str, public_key: bytes) -> None:
        self._key_ref = key_ref
        self._public_key = public_key
        self._address = address_of_public_key(public_key)

    @property
    def address(self) -> Address:
        return self._address

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def key_ref(self) -> str:
        return self._key_ref

    async def _raw_signature(self, digest: bytes) -> bytes:
        """The backend's signature (DER or r || s) of a 32-byte digest.

        Raises: SignerUnavailable.
        """
        raise NotImplementedError

    async def health(self) -> SignerHealth:
        """The backend's answer to a cheap probe for this key (never raises)."""
        raise NotImplementedError

    async def sign_digest(self, digest: bytes) -> RecoverableSignature:
        """Raises: WrongDigestLength, SignerUnavailable, BadSignature."""
        require_digest(digest)
        return finish(digest, await self._raw_signature(digest), self._public_key)

    async def sign_transaction(self, tx: Any) -> SignedTx:
        return await sign_transaction_with(tx, self.sign_digest)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(address={self._address}, key_ref={self._key_ref!r})"
