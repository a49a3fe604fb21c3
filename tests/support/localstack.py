"""LocalStack's KMS in host mode (no Docker), from its own venv under .cache/localstack.

research/kms-hsm.md §2a: LocalStack signs `MessageType=DIGEST` over the digest itself, checks
its length and parses like AWS; moto does neither. The hypercorn gateway binds only the
loopback address it is given (the default one bound 0.0.0.0). SIGTERM can hang for 40 s after
KMS served requests: it gets a few seconds, then SIGKILL (its own process group, by id).

The AWS credentials and region are dummies (LocalStack accepts any), set in the environment
only for the tests that use LocalStack (tests/conftest.py), as the standard chain reads them:
Chainflow itself is given only the endpoint URL.
"""

import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import boto3
import pytest

from chainflow.infra.signing.aws_kms import AwsKmsConfig
from tests.support.polling import eventually_sync
from tests.support.processes import START_ATTEMPTS, PortTaken, free_port, listens

# What LocalStack prints once its gateway's port is open (by it, or by whoever holds the port).
_READY = b"Ready."

ROOT = Path(__file__).resolve().parents[2]
PYTHON = Path(
    os.environ.get("CHAINFLOW_TEST_LOCALSTACK_PYTHON", ROOT / ".cache/localstack/bin/python")
)
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "test",
    # LocalStack accepts any: a distinctive one, so tests can check it is never printed.
    "AWS_SECRET_ACCESS_KEY": "cf-test-secret-5f3a9c",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def kms_config(url: str, *, timeout_s: float = 10.0, rate: float = 10_000.0) -> AwsKmsConfig:
    """Chainflow's KMS settings for this endpoint: no rate cap unless a test sets one."""
    return AwsKmsConfig(endpoint_url=url, timeout_s=timeout_s, max_signs_per_s=rate, max_retries=4)


@dataclass
class LocalStack:
    url: str
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        """Settings for a Chainflow process using this KMS."""
        return {**AWS_ENV, "CHAINFLOW_AWS_KMS_ENDPOINT_URL": self.url}

    def client(self) -> Any:
        """A boto3 KMS client of the tests' own (acting beside Chainflow)."""
        return boto3.session.Session(
            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=AWS_ENV["AWS_DEFAULT_REGION"],
        ).client("kms", endpoint_url=self.url)

    def pause(self) -> None:
        """Stop the process (SIGSTOP): connections are accepted, nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_localstack/health", timeout=2) as answer:  # noqa: S310
            body = answer.read()
        return b'"kms": "available"' in body or b'"kms": "running"' in body
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@contextmanager
def run_localstack(
    folder: Path, port: int | None = None, *, timeout_s: float = 90
) -> Iterator[LocalStack]:
    """LocalStack's KMS on `port`, or on a port picked free (None): started again on a new one
    while another process took the port first (START_ATTEMPTS in all; a port given is tried
    once). LocalStack cannot bind port 0 and report it, and its gateway failing to bind is no
    exit: it prints its ready line once the port is open, whoever opened it. So only its own
    listener counts: the other process's server would answer in its place."""
    if not PYTHON.is_file():
        pytest.fail("LocalStack is not installed: run ./scripts/bootstrap (.cache/localstack)")
    folder.mkdir(parents=True, exist_ok=True)
    attempts = START_ATTEMPTS if port is None else 1
    for attempt in range(1, attempts + 1):
        chosen = free_port() if port is None else port
        log = (folder / "localstack.log").open("wb")
        process = _start(folder, chosen, log)
        try:
            stack = LocalStack(url=f"http://127.0.0.1:{chosen}", folder=folder, process=process)
            _wait_started(stack, chosen, timeout_s)
        except PortTaken:
            _stop(process)
            log.close()
            if attempt == attempts:
                raise
            continue
        except BaseException:
            _stop(process)
            log.close()
            raise
        try:
            # The first KMS call loads the provider (seconds): made here, not in a test's timing.
            stack.client().list_keys(Limit=1)
            yield stack
        finally:
            _stop(process)
            log.close()
        return


def _start(folder: Path, port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **AWS_ENV,
        "GATEWAY_SERVER": "hypercorn",
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "LOCALSTACK_HOST": f"127.0.0.1:{port}",
        "DNS_ADDRESS": "0",
        "SERVICES": "kms",
        "DISABLE_EVENTS": "1",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "FILESYSTEM_ROOT": str(folder / "fs"),
    }
    return subprocess.Popen(
        [str(PYTHON), "-m", "localstack.runtime.main"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_started(stack: LocalStack, port: int, timeout_s: float) -> None:
    """Until this LocalStack's own gateway answers healthy on `port`. Raises PortTaken when it
    is ready (its port open) without listening there itself."""
    assert stack.process is not None
    process, log = stack.process, stack.folder / "localstack.log"

    def started() -> bool:
        ready = _READY in log.read_bytes().splitlines()  # read before looking at the port
        if listens(process.pid, port):
            if _healthy(stack.url):
                return True
        elif ready:
            raise PortTaken(f"LocalStack: port {port} is another process's")
        if process.poll() is not None:
            raise AssertionError(f"LocalStack exited; see {log}")
        return False

    eventually_sync(
        started, timeout_s=timeout_s, interval_s=0.2, what=f"LocalStack started (see {log})"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGCONT)  # a paused one cannot handle SIGTERM
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=3)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
