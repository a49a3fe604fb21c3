"""A worker or an API started while PostgreSQL cannot be reached waits for it (one warning line,
retries with backoff), starts once it answers, and exits 0 at once on SIGTERM while it waits.
Before, it exited 1 at start: a worker started beside a database still coming up was gone.

"The database comes up" is a TCP forwarder to the shared PostgreSQL, started on the port the
process was given only once the test has seen it wait."""

import asyncio
import base64
import contextlib
import json
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from chainflow.infra.signing.keystore import MasterKey
from tests.support.polling import eventually
from tests.support.processes import base_env, listening_port, processes, wait_http

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.parametrize("dialect", ["postgresql"], indirect=True),
]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


class Forwarder:
    """Holds a port of its own from the start (bound to port 0, not listening: connections are
    refused); once started, listens there and passes every connection through to the database,
    on a loop of its own thread (the test's loop blocks while `processes` waits for the process
    to exit, which must still reach its database then)."""

    def __init__(self, database_url: str) -> None:
        target = make_url(database_url)
        self.to = target.host or "127.0.0.1", target.port or 5432
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.to)
        self.writers += [writer, upstream_writer]
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    async def _serve(self) -> None:
        self.server = await asyncio.start_server(self._on_client, sock=self.sock)

    async def _stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(timeout=10)

    def close(self) -> None:
        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
        self.loop.close()
        self.sock.close()


def events_of(log: Path) -> list[dict[str, object]]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [json.loads(line) for line in lines if line.startswith("{")]


async def logged(log: Path, event: str) -> bool:
    return any(line.get("event") == event for line in events_of(log))


def env_for(database_url: str, port: int, tmp_path: Path) -> dict[str, str]:
    """The process's settings: the database behind a port where nothing listens yet."""
    url = make_url(database_url).set(port=port).render_as_string(hide_password=False)
    secret = base64.b64encode(MasterKey.generate().secret.reveal()).decode()
    return base_env(
        database_url=url, master_key=secret, data_dir=str(tmp_path / "data"), log_format="json"
    )


COMMANDS = {"worker": ["worker", "--metrics-port", "0"], "api": ["api", "--port", "0"]}


class TestStartWithoutDatabase:
    @pytest.mark.parametrize("name", ["worker", "api"])
    async def test_it_waits_then_serves_once_the_database_answers(
        self, database_url: str, tmp_path: Path, name: str
    ) -> None:
        log = tmp_path / "proc-0.log"
        database = Forwarder(database_url)
        env = env_for(database_url, database.port, tmp_path)
        with contextlib.closing(database), processes([COMMANDS[name]], env, tmp_path) as (proc,):
            await eventually(lambda: logged(log, "database.waiting"), timeout_s=30)
            assert proc.poll() is None  # it waits; before, it exited 1 here
            waiting = [e for e in events_of(log) if e["event"] == "database.waiting"]
            assert waiting[0]["level"] == "warning"
            assert "cannot reach the database" in str(waiting[0]["error"])
            database.start()
            if name == "worker":
                await eventually(lambda: logged(log, "worker.started"), timeout_s=30)
            else:
                port = await asyncio.to_thread(listening_port, proc, timeout_s=30)
                url = f"http://127.0.0.1:{port}/readyz"
                await asyncio.to_thread(wait_http, url, proc, timeout_s=30)
        # processes() checked that SIGTERM ended it with status 0

    @pytest.mark.parametrize("name", ["worker", "api"])
    async def test_sigterm_while_it_waits_exits_0_at_once(
        self, database_url: str, tmp_path: Path, name: str
    ) -> None:
        log = tmp_path / "proc-0.log"
        nowhere = Forwarder(database_url)  # never started: its port refuses every connection
        env = env_for(database_url, nowhere.port, tmp_path)
        with contextlib.closing(nowhere), processes([COMMANDS[name]], env, tmp_path) as (proc,):
            await eventually(lambda: logged(log, "database.waiting"), timeout_s=30)
            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            assert proc.returncode == 0, proc.returncode
            assert time.monotonic() - started < 3
        assert "Traceback" not in log.read_text()
