"""Key custody: seal a wallet's key, build its signer, check and rotate the master key."""

from collections.abc import Awaitable, Callable, Mapping
from typing import TypeAlias

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.types import SecretBytes
from chainflow.domain.wallets import repository
from chainflow.domain.wallets.errors import MasterKeyMismatch, MasterKeyRotated
from chainflow.domain.wallets.kinds import SignerKind
from chainflow.domain.wallets.models import Wallet
from chainflow.infra.db.custody_lock import share_custody_lock
from chainflow.infra.signing.aws_kms import (
    AwsKms,
    AwsKmsSigner,
    KmsKeyNotFound,
    KmsNotConfigured,
    WrongKeyUsage,
)
from chainflow.infra.signing.ecdsa import WrongCurve
from chainflow.infra.signing.keystore import (
    DecryptionFailed,
    MasterKey,
    SealedKey,
    rewrap,
    seal,
    unseal,
)
from chainflow.infra.signing.local import LocalSigner
from chainflow.infra.signing.pkcs11 import KeyNotFound, Pkcs11Signer, Pkcs11Token
from chainflow.infra.signing.signer import (
    HEALTHY,
    KeyUnreadable,
    Signer,
    SignerHealth,
    SignerUnavailable,
)


def associated_data(wallet: Wallet) -> bytes:
    """AAD binding a sealed key to its row: a ciphertext moved to another wallet fails."""
    return f"chainflow/wallet/v1|{wallet.id}|{wallet.address.lower()}".encode()


def seal_into(wallet: Wallet, private_key: SecretBytes, *, master: MasterKey) -> None:
    """Encrypt the key into the wallet row (id and address must be set)."""
    sealed = seal(private_key, master=master, associated_data=associated_data(wallet))
    wallet.signer_kind = SignerKind.LOCAL
    wallet.encrypted_key = sealed.ciphertext
    wallet.wrapped_data_key = sealed.wrapped_data_key
    wallet.master_key_id = sealed.master_key_id


def _sealed_of(wallet: Wallet) -> SealedKey:
    if wallet.encrypted_key is None or wallet.wrapped_data_key is None:
        raise MasterKeyMismatch(f"wallet {wallet.id} holds no locally sealed key")
    return SealedKey(
        ciphertext=wallet.encrypted_key,
        wrapped_data_key=wallet.wrapped_data_key,
        master_key_id=wallet.master_key_id or "",
    )


def signer_for(
    wallet: Wallet,
    *,
    master: MasterKey,
    pkcs11: Pkcs11Token | None = None,
    aws_kms: AwsKms | None = None,
    kms_public_key: bytes | None = None,
) -> Signer:
    """The wallet's signer: its sealed key decrypted in memory, or its key in a token, or
    in AWS KMS (its public key read beforehand by `read_public_key`).

    Raises:
        SignerUnavailable: the wallet's backend is not configured or cannot be reached, or its
            key is gone or no longer the wallet's (a lane waits rather than fail requests);
            KeyUnreadable when its sealed key cannot be decrypted (the message names the
            wallet and key ids, never key material).
    """
    if wallet.signer_kind is SignerKind.LOCAL:
        return _local_signer(wallet, master)
    if wallet.signer_kind is SignerKind.PKCS11 and pkcs11 is not None and wallet.key_ref:
        try:
            public_key = pkcs11.public_key(wallet.key_ref)
        except (KeyNotFound, WrongCurve) as exc:
            raise SignerUnavailable(str(exc)) from None
        signer = Pkcs11Signer(pkcs11, wallet.key_ref, public_key)
        if signer.address != wallet.address:
            raise SignerUnavailable(
                f"the token's key {wallet.key_ref!r} is not wallet {wallet.id}'s"
            )
        return signer
    if wallet.signer_kind is SignerKind.AWS_KMS and aws_kms is not None and wallet.key_ref:
        if kms_public_key is None:
            raise SignerUnavailable(f"the public key of KMS key {wallet.key_ref!r} is not read")
        kms_signer = AwsKmsSigner(aws_kms, wallet.key_ref, kms_public_key)
        if kms_signer.address != wallet.address:
            raise SignerUnavailable(f"the KMS key {wallet.key_ref!r} is not wallet {wallet.id}'s")
        return kms_signer
    raise SignerUnavailable(f"no {wallet.signer_kind} signer is configured in this process")


async def read_public_key(wallet: Wallet, *, aws_kms: AwsKms | None) -> bytes | None:
    """The public key a remote backend must be asked for before `signer_for` (KMS: one
    GetPublicKey round trip, not to be made on the event loop); None when none is needed.

    Raises: SignerUnavailable (KMS down, or the key gone, disabled, or no longer signing).
    """
    if wallet.signer_kind is not SignerKind.AWS_KMS or aws_kms is None or not wallet.key_ref:
        return None
    try:
        _, public_key = await aws_kms.public_key(wallet.key_ref)
    except (KmsKeyNotFound, WrongKeyUsage, WrongCurve, KmsNotConfigured) as exc:
        raise SignerUnavailable(str(exc)) from None
    return public_key


async def signer_health(
    wallet: Wallet, *, pkcs11: Pkcs11Token | None, aws_kms: AwsKms | None
) -> SignerHealth | None:
    """Whether the wallet's backend answers this process now (a cheap, bounded probe: see
    `Signer.health`); None when this process has no such backend configured."""
    if wallet.signer_kind is SignerKind.LOCAL:
        return HEALTHY
    if wallet.signer_kind is SignerKind.PKCS11 and pkcs11 is not None and wallet.key_ref:
        return await pkcs11.probe(wallet.key_ref)
    if wallet.signer_kind is SignerKind.AWS_KMS and aws_kms is not None and wallet.key_ref:
        return await aws_kms.health(wallet.key_ref)
    return None


# The rows each master key id wrapped that `master` does not know, per kind of sealed row
# ("wallet keys", ...): domain/master_key.foreign_key_ids counts every kind (wallets cannot
# import the features above them, whose rows the master key seals too).
ForeignKeyIds: TypeAlias = Callable[
    [AsyncSession, MasterKey], Awaitable[Mapping[str, Mapping[str, int]]]
]


async def check_sealing_key(
    session: AsyncSession, *, master: MasterKey, sealed_rows: ForeignKeyIds
) -> None:
    """Before a row is sealed: refuse if a rotation ran since this process read its key
    (rows are wrapped by a key it does not know), so nothing is sealed under a retired key;
    and keep a rotation from starting until the transaction ends (PostgreSQL). `sealed_rows`
    counts the rows of every kind (domain/master_key.foreign_key_ids: a rotation re-wraps
    webhook secrets too, and a database with none of the wallet rows, or local wallets only
    under the retired key's successor, is told by them). Required: counting the wallets'
    alone missed a rotation told only by the other kinds.

    Raises:
        MasterKeyRotated: this process must be restarted with the new key.
        RotationRunning: a rotation is running now.
    """
    await share_custody_lock(session)
    foreign = await sealed_rows(session, master)
    if foreign:
        kinds = " and ".join(sorted(foreign))
        raise MasterKeyRotated(
            f"the stored {kinds} are wrapped by a master key this process was not given (its "
            f"key is {master.key_id}): restart it with the current CHAINFLOW_MASTER_KEY"
        )


async def rewrap_batch(
    session: AsyncSession, *, keys: MasterKey, new: MasterKey, limit: int
) -> int:
    """Re-wrap up to `limit` data keys not yet under `new`, unwrapping each with whichever of
    `keys` its row names; returns how many. The caller commits each batch and calls again
    until 0: every row names the key that wraps it, so any prefix of batches is a valid state.

    Raises:
        DecryptionFailed: a row is wrapped by a key `keys` does not hold (nothing is flushed).
    """
    wallets = await repository.lock_sealed_not_under(session, new.key_id, limit=limit)
    for wallet in wallets:
        try:
            sealed = rewrap(
                _sealed_of(wallet), old=keys, new=new, associated_data=associated_data(wallet)
            )
        except DecryptionFailed as exc:  # say which row: a wallet's key
            raise DecryptionFailed(f"wallet {wallet.id}'s key: {exc.detail}") from None
        wallet.wrapped_data_key = sealed.wrapped_data_key
        wallet.master_key_id = sealed.master_key_id
    await session.flush()
    return len(wallets)


def _local_signer(wallet: Wallet, master: MasterKey) -> LocalSigner:
    """The wallet's sealed key, decrypted in memory. Raises: KeyUnreadable (the message names
    the wallet and key ids, never key material; nothing chained)."""
    try:
        sealed = _sealed_of(wallet)
        key = unseal(sealed, master=master, associated_data=associated_data(wallet))
    except (DecryptionFailed, MasterKeyMismatch) as exc:
        raise KeyUnreadable(f"wallet {wallet.id}: {exc.detail}") from None
    try:
        signer = LocalSigner(key)
    except Exception:  # whatever the curve library says of a bad key: never chained
        raise KeyUnreadable(f"wallet {wallet.id}: its sealed key is not a valid key") from None
    if signer.address.lower() != wallet.address.lower():  # sealed with the right data (review)
        raise KeyUnreadable(f"wallet {wallet.id}: its sealed key is not this wallet's")
    return signer
