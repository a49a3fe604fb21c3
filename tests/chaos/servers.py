"""Private Redis and PostgreSQL servers on their own ports, so a scenario can stop, flush and
restart them without touching the shared services the rest of the suite uses. Neither can bind
port 0 and report it: each starts on a port picked free, and again on a new one while another
process took that port first (tests/support/processes.py). A restart keeps its port (its
clients have the URL); it fails with PortTaken if another process took the port meanwhile."""

import asyncio
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from redis import Redis
from redis.exceptions import RedisError

from chainflow.migrations.runner import upgrade
from tests.support.polling import eventually
from tests.support.processes import START_ATTEMPTS, PortTaken, answers, free_port, listens

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
        """Until this server answers PING on its port. Raises PortTaken when it exited while
        another process listens there: that one's answer is not ours."""

        async def up() -> bool:
            return await asyncio.to_thread(self._answering)

        await eventually(up, timeout_s=20, interval_s=0.1)

    def _answering(self) -> bool:
        process = self._process
        assert process is not None, "not started"
        if process.poll() is not None:
            if answers(self.port):  # "Address already in use"
                raise PortTaken(f"redis-server: port {self.port} is another process's")
            raise AssertionError(f"redis-server exited with {process.returncode}")
        if not listens(process.pid, self.port):
            return False
        try:
            with Redis.from_url(self.url, socket_timeout=1) as client:
                return bool(client.ping())
        except (OSError, RedisError):
            return False

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()  # no SHUTDOWN SAVE: whatever was queued is gone
            self._process.wait(timeout=10)


@asynccontextmanager
async def private_redis() -> AsyncIterator[RedisServer]:
    """A redis-server of this test, answering on a port of its own: started again on a new
    port while another process took the one picked first (START_ATTEMPTS in all)."""
    for attempt in range(1, START_ATTEMPTS + 1):
        server = RedisServer(free_port())
        server.start()
        try:
            await server.ready()
        except PortTaken:
            server.stop()
            if attempt == START_ATTEMPTS:
                raise
            continue
        except BaseException:
            server.stop()
            raise
        try:
            yield server
        finally:
            server.stop()
        return


class PostgresServer:
    """A throw-away PostgreSQL cluster (initdb) on a free port, trust auth, fsync off."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.move_to(port)

    def move_to(self, port: int) -> None:
        """Start on `port` from now on (a stopped server whose port another process took)."""
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
        """Start the server on its port. Raises PortTaken when another process holds the port
        (the server could not bind it and exited)."""
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        data, log = str(self.folder / "data"), self.folder / "server.log"
        seen = log.stat().st_size if log.exists() else 0
        try:
            self._run("pg_ctl", "-D", data, "-o", options, "-l", str(log), "-w", "start")
        except subprocess.CalledProcessError:
            with log.open("rb") as lines:
                lines.seek(seen)
                if b"Address already in use" in lines.read():
                    raise PortTaken(f"postgres: port {self.port} is another process's") from None
            raise

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
    """A PostgreSQL server of this test with a migrated `chainflow` database, on a port of its
    own: started again on a new port while another process took the one picked first."""
    if not _PG_BIN:
        raise AssertionError("PostgreSQL server binaries not found under /usr/lib/postgresql")
    folder = Path(tempfile.mkdtemp(prefix="cf-chaos-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    server = PostgresServer(folder, free_port())
    try:
        await asyncio.to_thread(server.init)
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                await asyncio.to_thread(server.start)
                break
            except PortTaken:  # started again on a new port (see tests/support/processes.py)
                if attempt == START_ATTEMPTS:
                    raise
                server.move_to(free_port())
        await server.create_database()
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            await asyncio.to_thread(server.stop)
        shutil.rmtree(folder, ignore_errors=True)
