"""Run `chainflow` processes for end-to-end tests and stop them cleanly."""

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHAINFLOW = str(Path(sys.executable).parent / "chainflow")


def base_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINFLOW_")}
    if "CHAINFLOW_ANVIL_BIN" in os.environ:
        env["CHAINFLOW_ANVIL_BIN"] = os.environ["CHAINFLOW_ANVIL_BIN"]
    env["CHAINFLOW_RPC_ALLOW_PRIVATE_URLS"] = "true"  # the test chains are anvils on loopback
    return env | {f"CHAINFLOW_{k.upper()}": v for k, v in settings.items()}


def wait_http(url: str, process: subprocess.Popen[bytes], *, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args!r} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback test URL
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)  # polling a child process that is still starting
    raise AssertionError(f"{url} did not answer in time")


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
