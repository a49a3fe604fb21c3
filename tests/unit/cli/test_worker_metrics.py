"""A worker whose `--metrics-port` another process holds runs on without metrics (README
"Operating Chainflow"), and says so in an ERROR line naming the port and the flag, so that an
operator finds why Prometheus shows the target down."""

import os
import socket
import urllib.request
from types import SimpleNamespace
from typing import Any, cast

import structlog

from chainflow.cli.worker import serve_metrics
from tests.support.processes import free_port, listens


def _settings() -> Any:
    return cast(Any, SimpleNamespace(metrics_enabled=True, api_host="127.0.0.1"))


def test_a_taken_metrics_port_is_an_error_naming_the_port_and_the_flag() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        ran_on = False
        with structlog.testing.capture_logs() as logs, serve_metrics(_settings(), port):
            ran_on = True
    assert ran_on
    [line] = [entry for entry in logs if entry["event"] == "metrics.unavailable"]
    assert line["log_level"] == "error"
    assert line["port"] == port
    assert line["flag"] == "--metrics-port"


def test_a_stopped_metrics_server_closes_its_port() -> None:
    """Before, it stopped serving and kept its listening socket: the port stayed taken (and
    accepted connections no one answered) for as long as the process ran."""
    for _ in range(5):  # a port picked free may be taken before the bind: then another
        port = free_port()
        with structlog.testing.capture_logs() as logs, serve_metrics(_settings(), port):
            served = not [entry for entry in logs if entry["event"] == "metrics.unavailable"]
            if served:
                url = f"http://127.0.0.1:{port}/metrics"
                with urllib.request.urlopen(url, timeout=10) as response:
                    assert response.status == 200
                assert listens(os.getpid(), port)
        if served:
            break
    assert served
    assert not listens(os.getpid(), port)
