"""Bind a wallet to a key held by a signing backend (PKCS#11 token, AWS KMS).

Before anything is stored, the backend signs a canary digest and the signature must recover
to the address derived from the key's public key: a token that signs with another key, hashes
the digest again, or returns an encoding we misread is refused at binding, not at the first
transaction (research/kms-hsm.md pitfall 2: moto signs sha256(digest) and looks fine to itself).
"""

import asyncio
import secrets
from dataclasses import dataclass

from eth_keys.datatypes import Signature
from eth_utils.crypto import keccak

from chainflow.domain.wallets.errors import (
    SignerCanaryFailed,
    SignerKeyNotFound,
    SignerNotConfigured,
    SignerWrongCurve,
    SignerWrongKeyUsage,
)
from chainflow.domain.wallets.kinds import SignerKind
from chainflow.infra.signing.aws_kms import (
    AwsKms,
    AwsKmsSigner,
    KmsKeyNotFound,
    KmsNotConfigured,
    WrongKeyUsage,
)
from chainflow.infra.signing.ecdsa import BadSignature, WrongCurve
from chainflow.infra.signing.pkcs11 import KeyNotFound, Pkcs11Signer, Pkcs11Token
from chainflow.infra.signing.signer import Signer

__all__ = ["SignerRequest", "check_canary", "open_signer"]


@dataclass(frozen=True)
class SignerRequest:
    """What a caller asked for: a key generated in the backend, or one found by reference."""

    kind: SignerKind
    generate: bool = False
    key_ref: str | None = None


async def open_signer(
    request: SignerRequest, *, pkcs11: Pkcs11Token | None, aws_kms: AwsKms | None = None
) -> Signer:
    """The signer for a new binding (a new key is made in the backend for `generate`).

    Raises: SignerNotConfigured, SignerKeyNotFound, SignerWrongCurve, SignerWrongKeyUsage,
    SignerUnavailable.
    """
    if request.kind is SignerKind.PKCS11:
        if pkcs11 is None:
            raise SignerNotConfigured("no PKCS#11 token is configured (CHAINFLOW_PKCS11_MODULE)")
        return await _pkcs11_signer(pkcs11, request)
    if request.kind is SignerKind.AWS_KMS:
        if aws_kms is None:
            raise SignerNotConfigured("AWS KMS is not available in this process")
        return await _aws_kms_signer(aws_kms, request)
    raise SignerNotConfigured(f"signer type {request.kind} is not supported by this version")


async def _aws_kms_signer(kms: AwsKms, request: SignerRequest) -> Signer:
    """The key is referred to by its ARN from then on: an alias may later point elsewhere."""
    try:
        key_id = await kms.create_key() if request.generate else request.key_ref or ""
        arn, public_key = await kms.public_key(key_id)
    except KmsNotConfigured as exc:
        raise SignerNotConfigured(str(exc)) from None
    except KmsKeyNotFound as exc:
        raise SignerKeyNotFound(str(exc)) from None
    except WrongCurve as exc:
        raise SignerWrongCurve(f"the KMS key is not on secp256k1 ({exc})") from None
    except WrongKeyUsage as exc:
        raise SignerWrongKeyUsage(str(exc)) from None
    return AwsKmsSigner(kms, arn, public_key)


async def _pkcs11_signer(token: Pkcs11Token, request: SignerRequest) -> Signer:
    if request.generate:
        label, public_key = await asyncio.to_thread(token.generate)
        return Pkcs11Signer(token, label, public_key)
    label = request.key_ref or ""
    try:
        public_key = await asyncio.to_thread(token.public_key, label)
    except KeyNotFound as exc:
        raise SignerKeyNotFound(str(exc)) from None
    except WrongCurve as exc:
        raise SignerWrongCurve(str(exc)) from None
    return Pkcs11Signer(token, label, public_key)


async def check_canary(signer: Signer) -> None:
    """Sign a random digest and recover it independently (eth-keys, as eth-account does, not
    our own code).

    Raises: SignerCanaryFailed, SignerUnavailable.
    """
    digest = keccak(b"chainflow/canary/v1|" + secrets.token_bytes(32))
    try:
        signature = await signer.sign_digest(digest)
    except BadSignature as exc:
        raise SignerCanaryFailed(f"the backend's test signature was refused: {exc}") from None
    vrs = (signature.recovery_id, signature.r, signature.s)
    recovered = Signature(vrs=vrs).recover_public_key_from_msg_hash(digest)
    if recovered.to_checksum_address() != str(signer.address):
        raise SignerCanaryFailed("the backend's test signature recovers to another address")
