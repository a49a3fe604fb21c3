"""A benchmark's server binds port 0 itself and its port is read back from it: no port is
picked free beforehand, which another process could take before the server's bind (before,
bench.webhooks failed at cluster start with "Address already in use", and a retry on a new
port stood in for what a bind at 0 makes impossible)."""

import subprocess
import sys
from collections.abc import Iterator

import pytest
from bench.cluster import _serving, stop_all
from bench.ports import listening_port

# A server answering GET /healthz on the port in argv[1] (0: one its bind picks), which it
# prints once bound; with argv[2], it exits instead of serving.
_SERVER = """
import http.server, sys
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Ok)
print(server.server_address[1], flush=True)
if len(sys.argv) > 2:
    sys.exit(3)
server.serve_forever()
"""


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _server(started: list[subprocess.Popen[bytes]], *args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER, "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    started.append(proc)
    return proc


async def test_a_server_on_port_0_is_served_on_the_port_its_own_bind_picked(
    started: list[subprocess.Popen[bytes]],
) -> None:
    proc = _server(started)
    port = await _serving(proc)
    assert proc.stdout is not None
    assert port == int(proc.stdout.readline())  # the port the server itself says it bound
    await stop_all([proc])


def test_a_server_that_exits_before_it_listens_is_an_error(
    started: list[subprocess.Popen[bytes]],
) -> None:
    proc = _server(started, "exit")
    proc.wait(timeout=30)
    with pytest.raises(RuntimeError, match="exited with 3"):
        listening_port(proc, timeout_s=30)
