"""The steps of `chainflow keys rotate-master`, each safe to be killed at.

At every instant each wallet row names the master key that wraps it, and that key is on disk
(or, with CHAINFLOW_MASTER_KEY, in the operator's hands): `master.key` and
`master.key.previous` between them hold every key a row names, because
1. the rotation runs alone (data-folder `flock` and a PostgreSQL advisory lock, both exclusive);
2. rows a killed earlier rotation left under the previous key are re-wrapped under the current
   one first, so the previous key can be replaced;
3. the current key is written to `master.key.previous`, then the new key to `master.key`, each
   through a fsynced temporary file renamed into place (old or new file, never half of one);
4. only then are rows re-wrapped, in committed batches; a row commits with its new key id.
   Wallet keys and webhook signing secrets are both re-wrapped, batch by batch.
A run killed anywhere is finished by running it again with the same new key.
"""

from functools import partial
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from chainflow.cli.runtime import open_database
from chainflow.cli.secrets import read_secret
from chainflow.core.crashpoints import Crasher, CrashPoint
from chainflow.core.errors import InvalidInput
from chainflow.core.settings import Settings
from chainflow.domain.master_key import check_master_key
from chainflow.domain.wallets.custody import rewrap_batch
from chainflow.domain.webhooks import secrets as webhook_secrets
from chainflow.infra.datadir import fsync_file
from chainflow.infra.db.custody_lock import hold_custody_lock
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.master_source import install_master_key, uses_key_file

Sessionmaker = async_sessionmaker[AsyncSession]


def read_new_key(settings: Settings, path: Path | None) -> MasterKey:
    """The new key, from a file (flushed to disk first) or, with a key file, from stdin.

    Raises:
        InvalidInput: with CHAINFLOW_MASTER_KEY set and no file: a key read from a pipe would
        exist nowhere else once rows are re-wrapped under it.
    """
    if path is None and not uses_key_file(settings):
        raise InvalidInput(
            "with CHAINFLOW_MASTER_KEY set, give the new key with --new-key-file: it must be "
            "stored outside this process before any wallet is re-wrapped under it"
        )
    text = read_secret(path, what="new master key", option="--new-key-file")
    if path is not None:
        fsync_file(path)
    return MasterKey.from_b64(text, source="new master key")


async def rotate(settings: Settings, keys: MasterKey, new: MasterKey, crasher: Crasher) -> int:
    """Run every step under the database's custody lock; return how many rows moved to `new`."""
    async with (
        open_database(settings) as sessionmaker,
        hold_custody_lock(_engine_of(sessionmaker), exclusive=True),
    ):
        crasher.reached(CrashPoint.ROTATION_LOCKED)
        async with unit_of_work(sessionmaker) as session:
            await check_master_key(session, master=keys.with_previous(new))
        rewrap = partial(_rewrap_all, sessionmaker, settings, crasher=crasher)
        if uses_key_file(settings) and new.key_id != keys.key_id:
            await rewrap(keys=keys, new=keys.only())  # what an earlier rotation left undone
            install_master_key(settings.data_dir, current=keys.only(), new=new, crasher=crasher)
        return await rewrap(keys=new.with_previous(keys), new=new)


async def _rewrap_all(
    sessionmaker: Sessionmaker,
    settings: Settings,
    *,
    keys: MasterKey,
    new: MasterKey,
    crasher: Crasher,
) -> int:
    total = 0
    while True:
        async with unit_of_work(sessionmaker) as session:
            count = await rewrap_batch(
                session, keys=keys, new=new, limit=settings.key_rotation_batch_size
            )
            # Webhook signing secrets are sealed the same way (issue 16).
            count += await webhook_secrets.rewrap_batch(
                session, keys=keys, new=new, limit=settings.key_rotation_batch_size
            )
            if count:
                crasher.reached(CrashPoint.ROTATION_BATCH_REWRAPPED)
        if not count:
            return total
        crasher.reached(CrashPoint.ROTATION_BATCH_COMMITTED)
        total += count


def _engine_of(sessionmaker: Sessionmaker) -> AsyncEngine:
    engine = sessionmaker.kw["bind"]
    assert isinstance(engine, AsyncEngine)  # noqa: S101 - runtime.open_database binds one
    return engine
