"""Key custody: seal a wallet's key, build its signer, check and rotate the master key."""

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.types import SecretBytes
from chainflow.domain.wallets import repository
from chainflow.domain.wallets.errors import MasterKeyMismatch
from chainflow.domain.wallets.models import SignerKind, Wallet
from chainflow.infra.signing.keystore import MasterKey, SealedKey, rewrap, seal, unseal
from chainflow.infra.signing.local import LocalSigner
from chainflow.infra.signing.signer import Signer


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


def signer_for(wallet: Wallet, *, master: MasterKey) -> Signer:
    """Decrypt the wallet's key in memory and wrap it in a signer."""
    key = unseal(_sealed_of(wallet), master=master, associated_data=associated_data(wallet))
    return LocalSigner(key)


async def check_master_key(session: AsyncSession, *, master: MasterKey) -> None:
    """Refuse to run with a master key that did not wrap the stored wallets.

    Raises:
        MasterKeyMismatch: naming key ids only, never key material.
    """
    foreign = {
        key_id: count
        for key_id, count in (await repository.master_key_ids(session)).items()
        if key_id != master.key_id
    }
    if foreign:
        summary = ", ".join(f"{count} by {key_id}" for key_id, count in sorted(foreign.items()))
        raise MasterKeyMismatch(
            f"CHAINFLOW_MASTER_KEY (id {master.key_id}) did not wrap the stored wallet keys "
            f"({summary}); configure the right key, or finish a rotation with "
            "`chainflow keys rotate-master`"
        )


async def rotate_master_key(session: AsyncSession, *, old: MasterKey, new: MasterKey) -> int:
    """Re-wrap every data key under `new`; rows already under `new` are skipped (resumable).

    Returns how many rows were re-wrapped. The caller commits once, so a crash leaves
    either every row under the old key or every row under the new one.
    """
    rewrapped = 0
    for wallet in await repository.list_sealed(session):
        if wallet.master_key_id == new.key_id:
            continue
        sealed = rewrap(
            _sealed_of(wallet), old=old, new=new, associated_data=associated_data(wallet)
        )
        wallet.wrapped_data_key = sealed.wrapped_data_key
        wallet.master_key_id = sealed.master_key_id
        rewrapped += 1
    await session.flush()
    return rewrapped
