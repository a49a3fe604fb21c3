"""Start `chainflow dev --anvil` as a real process, probe it over HTTP, stop it with SIGTERM."""

import json
import signal
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from tests.support.polling import eventually_sync
from tests.support.processes import listening_port


@dataclass
class DevReport:
    healthz: dict[str, Any]
    dev_wallet_chain_ids: list[int]
    dev_wallet_balance_wei: int
    exit_code: int
    output: str


def _get(url: str, token: str | None = None) -> Any:
    request = urllib.request.Request(url)  # noqa: S310 - loopback URL built by the test
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return json.loads(response.read())


def _wait_healthy(base: str, process: subprocess.Popen[str], timeout_s: float = 60) -> Any:

    def health() -> Any:
        if process.poll() is not None:
            raise AssertionError(f"chainflow dev exited with {process.returncode}")
        try:
            return _get(f"{base}/healthz")
        except (urllib.error.URLError, ConnectionError):
            return None

    return eventually_sync(
        health, timeout_s=timeout_s, interval_s=0.1, what="chainflow dev answering /healthz"
    )


def run_dev_and_probe(env: dict[str, str], chainflow: str) -> DevReport:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [chainflow, *args], env=env, capture_output=True, text=True, timeout=60, check=True
        )

    upgraded, created = cli("db", "upgrade"), cli("apikey", "create", "--scopes", "read")
    token = created.stdout.strip().splitlines()[-1]
    setup = "".join([upgraded.stdout, upgraded.stderr, created.stdout, created.stderr])
    process = subprocess.Popen(
        [chainflow, "dev", "--anvil", "--port", "0", "--anvil-port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{listening_port(process)}"
        healthz = _wait_healthy(base, process)
        wallets = _get(f"{base}/v1/wallets", token)["items"]
        [dev_wallet] = [w for w in wallets if w["label"] == "anvil dev wallet"]
        lane = _get(f"{base}/v1/wallets/{dev_wallet['id']}/chains/31337", token)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    return DevReport(
        healthz=healthz,
        dev_wallet_chain_ids=dev_wallet["chain_ids"],
        dev_wallet_balance_wei=int(lane["balance_wei"]),
        exit_code=process.returncode,
        output=setup + output,
    )
