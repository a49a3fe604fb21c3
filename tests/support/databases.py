"""Test databases: one migrated template per dialect per run, cloned for every test."""

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import asyncpg

from chainflow.migrations.runner import upgrade

POSTGRES_URL = os.environ.get(
    "CHAINFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
_RUN = uuid.uuid4().hex[:8]


def worker_redis_url(url: str, worker: str | None) -> str:
    """The Redis database of this pytest-xdist worker: `url` names worker gw0's, and worker gwN
    takes the number N below it (default 15: gw0 15, gw1 14, ...), so that the queues of two
    workers never meet. Without xdist (`worker` None) it is `url` itself."""
    if not worker:
        return url
    base, _, db = url.rpartition("/")
    index = int(worker.removeprefix("gw"))
    if not db.isdigit() or int(db) < index:
        raise RuntimeError(f"CHAINFLOW_TEST_REDIS_URL must end in a database number >= {index}")
    return f"{base}/{int(db) - index}"


REDIS_URL = worker_redis_url(
    os.environ.get("CHAINFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    os.environ.get("PYTEST_XDIST_WORKER"),
)


def _pg_url(database: str) -> str:
    base, _, _ = POSTGRES_URL.rpartition("/")
    return f"{base}/{database}"


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(POSTGRES_URL)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


# PostgreSQL 15's DROP DATABASE forces a checkpoint and waits for it: 0.27 s of the teardown of
# every PostgreSQL test in tests/integration (2 workers, 2026-12-06), over 1 s each on a loaded
# machine, and each one flushes every other worker's dirty pages too. Drops that wait at once
# share a checkpoint, so the clones of finished tests are dropped _DROP_BATCH at a time, together
# (30 drops: 28 s one after another, 0.7-3 s all at once). 8 keeps the extra connections far
# below max_connections (100) beside a chaos cluster's.
_DROP_BATCH = 8


class PostgresDatabases:
    """Creates `cf_tpl_<run>` once, migrated, then clones it per test; drops clones in batches."""

    def __init__(self) -> None:
        self.template = f"cf_tpl_{_RUN}"
        self._created: list[str] = []  # not dropped yet
        self._finished: list[str] = []  # of those, the ones whose test is over

    async def start(self) -> None:
        await _admin(f'CREATE DATABASE "{self.template}"')
        await asyncio.to_thread(upgrade, _pg_url(self.template))

    async def empty(self) -> str:
        """A new database with no tables (for migration tests)."""
        name = f"cf_empty_{uuid.uuid4().hex[:10]}"
        await _admin(f'CREATE DATABASE "{name}"')
        self._created.append(name)
        return _pg_url(name)

    async def clone(self) -> str:
        name = f"cf_t_{uuid.uuid4().hex[:10]}"
        await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self._created.append(name)
        return _pg_url(name)

    async def drop(self, url: str) -> None:
        """Drop the database of `url` (a clone or an `empty()` one) now or with the next batch;
        its test must be done with it."""
        self._finished.append(url.rpartition("/")[2])
        if len(self._finished) >= _DROP_BATCH:
            await self._drop(self._finished)

    async def stop(self) -> None:
        await self._drop(self._created)
        await _admin(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')

    async def _drop(self, names: list[str]) -> None:
        dropping = list(names)
        self._finished = [n for n in self._finished if n not in dropping]
        self._created = [n for n in self._created if n not in dropping]
        await asyncio.gather(
            *(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)') for name in dropping)
        )


class SqliteDatabases:
    """A migrated template file copied per test."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.template = folder / "template.db"

    async def start(self) -> None:
        await asyncio.to_thread(upgrade, f"sqlite:///{self.template}")

    async def empty(self) -> str:
        return f"sqlite:///{self.folder / f'empty-{uuid.uuid4().hex[:10]}.db'}"

    async def clone(self) -> str:
        target = self.folder / f"t-{uuid.uuid4().hex[:10]}.db"
        shutil.copyfile(self.template, target)
        return f"sqlite:///{target}"

    async def drop(self, url: str) -> None:
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    async def stop(self) -> None:
        pass


TestDatabases = PostgresDatabases | SqliteDatabases
