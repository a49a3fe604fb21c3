"""Private Redis and PostgreSQL servers on their own ports, so a scenario can stop, flush and
restart them without touching the shared services the rest of the suite uses."""

import asyncio
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg
from redis import Redis
from redis.exceptions import RedisError

from chainflow.migrations.runner import upgrade
from tests.conftest import free_port
from tests.support.polling import eventually

_PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


class RedisServer:
    """redis-server with nothing on disk: a restart is also a flush."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        self._process = subprocess.Popen(
            ["redis-server", *args, "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    async def ready(self) -> None:
        def ping() -> bool:
            try:
                return bool(Redis.from_url(self.url, socket_timeout=1).ping())
            except (OSError, RedisError):
                return False

        async def up() -> bool:
            return await asyncio.to_thread(ping)

        await eventually(up, timeout_s=20, interval_s=0.1)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()  # no SHUTDOWN SAVE: whatever was queued is gone
            self._process.wait(timeout=10)


@contextmanager
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


class PostgresServer:
    """A throw-away PostgreSQL cluster (initdb) on a free port, trust auth, fsync off."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/chainflow"

    def _run(self, *args: str) -> None:
        command = [str(_PG_BIN[-1] / args[0]), *args[1:]]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.folder / "data"), "-A", "trust", "-U", "postgres")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        data, log = str(self.folder / "data"), str(self.folder / "server.log")
        self._run("pg_ctl", "-D", data, "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")

    async def create_database(self) -> None:
        admin = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres")
        try:
            await admin.execute("CREATE DATABASE chainflow")
        finally:
            await admin.close()
        await asyncio.to_thread(upgrade, self.url)


@asynccontextmanager
async def private_postgres() -> AsyncIterator[PostgresServer]:
    if not _PG_BIN:
        raise AssertionError("PostgreSQL server binaries not found under /usr/lib/postgresql")
    folder = Path(tempfile.mkdtemp(prefix="cf-chaos-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    server = PostgresServer(folder, free_port())
    try:
        await asyncio.to_thread(server.init)
        await asyncio.to_thread(server.start)
        await server.create_database()
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            await asyncio.to_thread(server.stop)
        shutil.rmtree(folder, ignore_errors=True)
