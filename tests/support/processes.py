"""Run `chainflow` processes for end-to-end tests and stop them cleanly."""

import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from tests.support.polling import eventually_sync

CHAINFLOW = str(Path(sys.executable).parent / "chainflow")
# A server that cannot bind port 0 and report it (another program, or a flag where 0 means
# off) starts on a port picked free (bind to 0, then close); another process may take that
# port before the server binds it. Such a start is made again on a new port, at most this many
# times in all (as bench/ports.py does for the benchmarks' servers).
START_ATTEMPTS = 5


class PortTaken(AssertionError):
    """Another process listens on the port a server of ours was started on."""


_HELD: list[socket.socket] = []  # the socket of refusing_port, open until the process exits


@functools.cache
def refusing_port() -> int:
    """A port where nothing listens, for as long as this test process runs: bound to port 0
    and held, never listening, so every connection to it is refused and no other process can
    start a server there (a port picked free and closed could get one). One per process."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _HELD.append(sock)
    port: int = sock.getsockname()[1]
    return port


def free_port() -> int:
    """A port free now (bind to 0, then close): a server that can bind port 0 itself should;
    one that cannot starts on this one and again on a new one when it was taken (above)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def base_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINFLOW_")}
    if "CHAINFLOW_ANVIL_BIN" in os.environ:
        env["CHAINFLOW_ANVIL_BIN"] = os.environ["CHAINFLOW_ANVIL_BIN"]
    env["CHAINFLOW_RPC_ALLOW_PRIVATE_URLS"] = "true"  # the test chains are anvils on loopback
    return env | {f"CHAINFLOW_{k.upper()}": v for k, v in settings.items()}


def wait_http(url: str, process: subprocess.Popen[bytes], *, timeout_s: float = 60) -> None:
    """Until `process` answers on `url`. Only its own answer counts: a port picked free can be
    taken by another process before `process` binds it, and that process's server (another
    worker's API or anvil) would answer in its place while `process` exits, or runs on without
    the port (a worker's metrics). Raises PortTaken once another process is seen listening on
    the port while `process` is not."""
    port = urllib.parse.urlsplit(url).port

    def answered() -> bool:
        if process.poll() is not None:
            if port and answers(port):
                raise PortTaken(f"{process.args!r} exited: port {port} is another process's")
            raise AssertionError(f"{process.args!r} exited with {process.returncode}")
        # Someone answered before we looked at ours: if ours was not listening, another was.
        if port and answers(port) and not listens(process.pid, port):
            raise PortTaken(f"{process.args!r}: port {port} is another process's")
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback test URL
                return port is None or listens(process.pid, port)
        except (urllib.error.URLError, ConnectionError):
            return False

    eventually_sync(answered, timeout_s=timeout_s, interval_s=0.1, what=f"an answer on {url}")


def wait_handling_sigterm(*started: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """Until each process has a SIGTERM handler of its own (Linux: /proc/PID/status `SigCgt`)
    or has exited, all within one deadline. `chainflow` installs one first thing in its entry
    point, but a SIGTERM while the interpreter itself still starts ends the process with the
    default action (-15): a worker restarted just before a test's end, on a loaded machine,
    was seen to. Waited for one after another, each had a deadline of its own: a cluster's stop
    could wait `timeout_s` per process."""
    waiting = list(started)

    def handled() -> bool:
        nonlocal waiting
        waiting = [process for process in waiting if not _handles_sigterm(process)]
        return not waiting

    eventually_sync(
        handled,
        timeout_s=timeout_s,
        what=lambda: f"a SIGTERM handler in {[process.args for process in waiting]!r}",
    )


def _handles_sigterm(process: subprocess.Popen[bytes]) -> bool:
    """Whether `process` has a SIGTERM handler of its own, or has exited."""
    if process.poll() is not None:
        return True
    try:
        status = Path(f"/proc/{process.pid}/status").read_text()
    except FileNotFoundError:  # exited meanwhile
        return True
    fields = dict(line.split(":", 1) for line in status.splitlines())
    return bool(int(fields["SigCgt"].strip(), 16) & (1 << (signal.SIGTERM - 1)))


def wait_all(started: Sequence[subprocess.Popen[bytes]], *, timeout_s: float = 60) -> list[int]:
    """The exit code of each process, all within one deadline. Whatever still runs when it
    returns or raises is killed (SIGKILL) and reaped: no process outlives a failed wait.

    Raises:
        subprocess.TimeoutExpired: one still ran at the deadline.
    """
    deadline = time.monotonic() + timeout_s
    try:
        return [process.wait(timeout=max(deadline - time.monotonic(), 0)) for process in started]
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()


def serving_on_free_port(
    start: Callable[[int], subprocess.Popen[bytes]],
    url: Callable[[int], str],
    stop: Callable[[subprocess.Popen[bytes]], None],
) -> tuple[subprocess.Popen[bytes], int]:
    """`start(port)` on a port picked free, once it answers on `url(port)` itself (wait_http);
    `stop`ped and started again on a new port while another process took the port first, at
    most START_ATTEMPTS times in all. For a server that cannot bind port 0 and report it."""
    for attempt in range(1, START_ATTEMPTS + 1):
        port = free_port()
        process = start(port)
        try:
            wait_http(url(port), process)
        except PortTaken:
            stop(process)
            if attempt == START_ATTEMPTS:
                raise
            continue
        return process, port
    raise AssertionError("unreachable")


def listening_port(process: subprocess.Popen[Any], *, timeout_s: float = 60) -> int:
    """The TCP port `process` itself (not a child of it: dev's anvil) listens on, once it
    does: a server started with `--port 0` (its own bind picked the port, no race)."""

    def port() -> int | None:
        if process.poll() is not None:
            raise AssertionError(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            ports = {
                conn.laddr[1]
                for conn in psutil.Process(process.pid).net_connections("tcp")
                if conn.status == psutil.CONN_LISTEN
            }
            assert len(ports) < 2, f"{process.args!r} listens on several ports: {sorted(ports)}"
            return ports.pop() if ports else None
        return None

    return eventually_sync(port, timeout_s=timeout_s, what=f"{process.args!r} listening")


def listens(pid: int, port: int) -> bool:
    """Whether process `pid` (or a child of it) holds a listening TCP socket on `port`."""
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        process = psutil.Process(pid)
        for one in [process, *process.children(recursive=True)]:
            for conn in one.net_connections("tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr[1] == port:
                    return True
    return False


def answers(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


@contextmanager
def processes(
    commands: list[list[str]], env: dict[str, str], log_dir: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start each `chainflow …` command; on exit SIGTERM them all and check they exit 0."""
    started: list[subprocess.Popen[bytes]] = []
    logs = [(log_dir / f"proc-{index}.log").open("wb") for index in range(len(commands))]
    try:
        for args, log in zip(commands, logs, strict=True):
            started.append(
                subprocess.Popen([CHAINFLOW, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
            )
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = [_wait_or_kill(process) for process in started]
        for log in logs:
            log.close()
    assert codes == [0] * len(started), codes


def _wait_or_kill(process: subprocess.Popen[bytes]) -> int | str:
    """Its exit code; one that does not stop within 30 s of SIGTERM is killed (never left
    running into the next test) and reported as hung."""
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
        return "hung after SIGTERM"
