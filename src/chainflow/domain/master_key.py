"""The master key against every row it seals: wallet keys and webhook signing secrets.

Above both features (domain/wallets cannot import domain/webhooks): a process checks here, at
start and before a rotation, that its keys wrapped every sealed row, whatever its kind.
"""

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.domain.wallets import custody
from chainflow.domain.wallets import repository as wallets
from chainflow.domain.wallets.errors import MasterKeyMismatch
from chainflow.domain.webhooks import repository as webhooks
from chainflow.infra.signing.keystore import MasterKey

# Every kind of row the master key seals (grep seal_into), and how many each key id wrapped.
_SEALED: tuple[tuple[str, Callable[[AsyncSession], Awaitable[dict[str, int]]]], ...] = (
    ("wallet keys", wallets.master_key_ids),
    ("webhook signing secrets", webhooks.master_key_ids),
)


async def foreign_key_ids(session: AsyncSession, master: MasterKey) -> dict[str, dict[str, int]]:
    """Per kind of sealed row, the rows each key id not known to `master` wrapped."""
    known = master.known_ids
    foreign: dict[str, dict[str, int]] = {}
    for kind, counts_of in _SEALED:
        counts = await counts_of(session)
        ids = {key_id: count for key_id, count in counts.items() if key_id not in known}
        if ids:
            foreign[kind] = ids
    return foreign


async def check_master_key(session: AsyncSession, *, master: MasterKey) -> None:
    """Refuse to run with master keys that did not wrap every sealed row (wallet keys and
    webhook signing secrets; the configured key and its previous one, if any, between them).

    Raises:
        MasterKeyMismatch: naming the kinds of rows and key ids only, never key material.
    """
    foreign = await foreign_key_ids(session, master)
    if foreign:
        summary = " and the stored ".join(
            f"{kind} ({', '.join(f'{count} by {key_id}' for key_id, count in sorted(ids.items()))})"
            for kind, ids in foreign.items()
        )
        raise MasterKeyMismatch(
            f"CHAINFLOW_MASTER_KEY (id {master.key_id}) did not wrap the stored {summary}; "
            "configure the right key, or finish a rotation with `chainflow keys rotate-master`"
        )


async def check_sealing_key(session: AsyncSession, *, master: MasterKey) -> None:
    """Before a row is sealed (a webhook secret; wallets pass `foreign_key_ids` to
    import_wallet): refuse if a rotation ran since this process read its key, counting every
    kind of sealed row, and keep a rotation from starting until the transaction ends.

    Raises: MasterKeyRotated, RotationRunning.
    """
    await custody.check_sealing_key(session, master=master, sealed_rows=foreign_key_ids)
