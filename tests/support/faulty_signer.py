"""A local signer made to sign wrongly, as a fault in memory or the CPU would: the signer's own
check (infra/signing/local.py) then raises BadSignature instead of letting it out."""

from collections.abc import Iterator
from contextlib import contextmanager

import coincurve

from chainflow.infra.signing.local import LocalSigner


class FaultyKey:
    """A key whose signatures come out with one bit of s flipped: a fault in memory or the CPU
    (with deterministic nonces, such a signature and the correct one give the key away)."""

    def __init__(self, key: coincurve.PrivateKey) -> None:
        self._key = key

    def sign_recoverable(self, digest: bytes, hasher: None) -> bytes:
        signature = bytearray(self._key.sign_recoverable(digest, hasher=hasher))
        signature[40] ^= 0x01
        return bytes(signature)


@contextmanager
def bad_signatures(signer: LocalSigner) -> Iterator[None]:
    """While it holds, every signature `signer` makes fails its check (BadSignature)."""
    sound = signer._curve_key
    signer._curve_key = FaultyKey(sound)  # type: ignore[assignment]
    try:
        yield
    finally:
        signer._curve_key = sound
