"""An endpoint's signing secrets at rest: sealed like wallet keys, under the master key."""

import secrets as random_source
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.types import SecretBytes
from chainflow.domain.webhooks import repository
from chainflow.domain.webhooks.models import WebhookEndpoint
from chainflow.domain.webhooks.signing import SECRET_BYTES
from chainflow.infra.signing.keystore import (
    DecryptionFailed,
    MasterKey,
    SealedKey,
    rewrap,
    seal,
    unseal,
)


def generate_secret() -> SecretBytes:
    return SecretBytes(random_source.token_bytes(SECRET_BYTES))


def associated_data(endpoint_id: uuid.UUID) -> bytes:
    """AAD binding sealed secrets to their endpoint: a ciphertext moved to another row fails."""
    return f"chainflow/webhook/v1|{endpoint_id}".encode()


def seal_into(
    endpoint: WebhookEndpoint, secrets: Sequence[SecretBytes], *, master: MasterKey
) -> None:
    """Seal the current secret (then the previous one, if any) into the row (id must be set)."""
    joined = SecretBytes(b"".join(s.reveal() for s in secrets))
    sealed = seal(joined, master=master, associated_data=associated_data(endpoint.id))
    endpoint.sealed_secrets = sealed.ciphertext
    endpoint.wrapped_data_key = sealed.wrapped_data_key
    endpoint.master_key_id = sealed.master_key_id


def _sealed_of(endpoint: WebhookEndpoint) -> SealedKey:
    return SealedKey(
        ciphertext=endpoint.sealed_secrets,
        wrapped_data_key=endpoint.wrapped_data_key,
        master_key_id=endpoint.master_key_id,
    )


def stored_secrets(endpoint: WebhookEndpoint, *, master: MasterKey) -> list[SecretBytes]:
    """Every secret stored: the current one first. Raises: DecryptionFailed."""
    joined = unseal(
        _sealed_of(endpoint), master=master, associated_data=associated_data(endpoint.id)
    ).reveal()
    return [SecretBytes(joined[i : i + SECRET_BYTES]) for i in range(0, len(joined), SECRET_BYTES)]


def signing_secrets(
    endpoint: WebhookEndpoint, *, master: MasterKey, now: datetime
) -> list[SecretBytes]:
    """The secrets that sign now: the current one, and the previous one during the overlap."""
    stored = stored_secrets(endpoint, master=master)
    expires = endpoint.previous_secret_expires_at
    return stored if expires is not None and now < expires else stored[:1]


def rewrap_into(endpoint: WebhookEndpoint, *, keys: MasterKey, new: MasterKey) -> None:
    """Re-wrap the data key under `new` (master-key rotation); the secrets are unchanged."""
    sealed = rewrap(
        _sealed_of(endpoint), old=keys, new=new, associated_data=associated_data(endpoint.id)
    )
    endpoint.wrapped_data_key = sealed.wrapped_data_key
    endpoint.master_key_id = sealed.master_key_id


async def rewrap_batch(
    session: AsyncSession, *, keys: MasterKey, new: MasterKey, limit: int
) -> int:
    """Re-wrap up to `limit` endpoints' data keys not yet under `new` (master-key rotation,
    beside the wallets' `custody.rewrap_batch`); returns how many. The caller commits each
    batch and calls again until 0.

    Raises:
        DecryptionFailed: a row is wrapped by a key `keys` does not hold (nothing is flushed).
    """
    endpoints = await repository.lock_sealed_not_under(session, new.key_id, limit=limit)
    for endpoint in endpoints:
        try:
            rewrap_into(endpoint, keys=keys, new=new)
        except DecryptionFailed as exc:  # say which row: a webhook's secrets, not a wallet key
            raise DecryptionFailed(
                f"webhook {endpoint.id}'s signing secrets: {exc.detail}"
            ) from None
    await session.flush()
    return len(endpoints)
