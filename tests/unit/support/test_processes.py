"""`wait_http` counts a started process only on its own answer: when another process took the
port first (a port picked free, then taken before the bind), the other's server answers while
ours fails to bind and exits; before, that answer passed for ours."""

import http.server
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support import processes
from tests.support.processes import (
    PortTaken,
    free_port,
    listens,
    refusing_port,
    serving_on_free_port,
    wait_http,
)

# Serves GET on the port in argv[1] (0: one the OS picks), printed once bound.
_SERVER = """
import http.server, sys
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Ok)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"someone else")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def another_server() -> Iterator[int]:
    """Another server (in this test's process) answering GET on a port of its own."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _start(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait()
    if process.stdout is not None:
        process.stdout.close()


def test_another_process_answering_on_the_port_is_not_taken_for_ours(another_server: int) -> None:
    process = _start(another_server)  # as if `free_port` had picked it: its bind fails
    try:
        with pytest.raises(AssertionError, match="another process's"):
            wait_http(f"http://127.0.0.1:{another_server}/healthz", process, timeout_s=30)
    finally:
        _stop(process)


def test_a_process_answering_on_its_own_port_counts(another_server: int) -> None:
    process = _start(0)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        assert port != another_server
        wait_http(f"http://127.0.0.1:{port}/healthz", process, timeout_s=30)
    finally:
        _stop(process)


# Like a worker given a `--metrics-port` another process holds: it runs on without the port.
_RUNS_ON = """
import http.server, signal, sys
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
try:
    server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Ok)
except OSError:
    signal.pause()  # runs on without it, idle until the test's SIGTERM or SIGKILL
server.serve_forever()
"""


def _start_running_on(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", _RUNS_ON, str(port)], stderr=subprocess.DEVNULL)


def test_a_process_running_on_without_its_taken_port_is_reported_at_once(
    another_server: int,
) -> None:
    """Before, its wait ran to the timeout (a minute) and said only that nothing answered."""
    process = _start_running_on(another_server)
    try:
        started = time.monotonic()
        with pytest.raises(PortTaken, match="another process's"):
            wait_http(f"http://127.0.0.1:{another_server}/healthz", process, timeout_s=30)
        assert time.monotonic() - started < 10
        assert process.poll() is None  # it runs on: only the wait told
    finally:
        _stop(process)


def test_a_server_whose_port_was_taken_starts_again_on_another(
    another_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    picked = iter([another_server])
    monkeypatch.setattr(processes, "free_port", lambda: next(picked, None) or free_port())
    started: list[subprocess.Popen[bytes]] = []
    stopped: list[subprocess.Popen[bytes]] = []

    def start(port: int) -> subprocess.Popen[bytes]:
        started.append(_start_running_on(port))
        return started[-1]

    try:
        process, port = serving_on_free_port(
            start, lambda port: f"http://127.0.0.1:{port}/healthz", stopped.append
        )
        assert port != another_server
        assert started == [stopped[0], process]
        assert listens(process.pid, port)
    finally:
        for one in started:
            _stop(one)


def test_the_refusing_port_refuses_and_no_one_else_can_serve_there() -> None:
    """Before, a URL where nothing listens had a port picked free and closed: any process on
    the host could start a server there, and the test met it instead of a refusal."""
    port = refusing_port()
    assert refusing_port() == port  # one per test process
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with socket.socket() as other, pytest.raises(OSError, match="in use"):
        other.bind(("127.0.0.1", port))


# A start-up the test ends: the SIGTERM handler (exit 0) comes only after a line on stdin.
_LATE_HANDLER = """
import signal, sys
sys.stdin.readline()  # the start-up before the handler, until the test ends it
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
signal.pause()  # runs until told to stop
"""


@pytest.fixture
def starting() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes still in their start-up (`_LATE_HANDLER`), each killed at the end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for child in started:
        child.kill()
        child.wait()
        if child.stdin is not None:
            child.stdin.close()


def _start_late(started: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    child = subprocess.Popen([sys.executable, "-c", _LATE_HANDLER], stdin=subprocess.PIPE)
    started.append(child)
    return child


def _end_start_up(child: subprocess.Popen[bytes]) -> None:
    assert child.stdin is not None
    child.stdin.write(b"go\n")
    child.stdin.flush()


def test_a_process_is_told_to_stop_only_once_it_handles_sigterm(
    starting: list[subprocess.Popen[bytes]],
) -> None:
    """A SIGTERM during a process's start-up ends it with -15 (the chaos cluster's stop saw a
    just-restarted worker do so); waited for, the same SIGTERM is handled and it exits 0."""
    child = _start_late(starting)
    with pytest.raises(AssertionError, match=r"SIGTERM handler in .* not met within"):
        processes.wait_handling_sigterm(child, timeout_s=0.5)  # still starting
    _end_start_up(child)
    processes.wait_handling_sigterm(child, timeout_s=30)
    child.terminate()
    assert child.wait(timeout=30) == 0
    early = _start_late(starting)
    early.terminate()
    assert early.wait(timeout=30) == -15


def test_several_processes_are_waited_for_at_once_within_one_deadline(
    starting: list[subprocess.Popen[bytes]],
) -> None:
    """Before, a cluster's stop waited for each process in turn, each with a deadline of its
    own; now one wait covers them all, and names those still starting at its deadline."""
    ready, late, exited = _start_late(starting), _start_late(starting), _start_late(starting)
    _end_start_up(ready)
    exited.kill()
    with pytest.raises(AssertionError, match=r"SIGTERM handler in .* not met within") as raised:
        processes.wait_handling_sigterm(ready, late, exited, timeout_s=0.5)
    assert str(raised.value).count(str(sys.executable)) == 1  # only the one still starting
    _end_start_up(late)
    processes.wait_handling_sigterm(ready, late, exited, timeout_s=30)
    for child in (ready, late):
        child.terminate()
    assert processes.wait_all([ready, late, exited], timeout_s=30) == [0, 0, -9]


def test_wait_all_has_one_deadline_for_all() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
    try:
        started = time.monotonic()
        with pytest.raises(subprocess.TimeoutExpired):
            processes.wait_all([child] * 10, timeout_s=0.5)
        assert time.monotonic() - started < 3  # one 0.5 s deadline, not ten
    finally:
        child.kill()
        child.wait()


def test_wait_all_kills_what_still_runs_at_the_deadline() -> None:
    forever = [sys.executable, "-c", "import signal; signal.pause()"]
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    assert done.wait(timeout=30) == 0
    late = [subprocess.Popen(forever) for _ in range(2)]
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            processes.wait_all([late[0], done, late[1]], timeout_s=0.5)
        # Killed and reaped by wait_all itself, the one after the timed-out one included.
        assert [p.returncode for p in late] == [-signal.SIGKILL] * 2
        assert done.returncode == 0
    finally:
        for process in late:
            process.kill()
            process.wait()
