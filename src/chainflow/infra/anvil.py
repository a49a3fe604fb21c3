"""A local anvil chain as a child process: find the binary, start it, wait until it answers."""

import asyncio
import os
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from chainflow.core.errors import ConfigError, Unavailable
from chainflow.infra.rpc.client import RpcClient, RpcTransportError

# anvil's first default account; public knowledge, funded with 10,000 ETH on every anvil.
DEV_PRIVATE_KEY_HEX = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
_NPM_PATH = Path("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")


def find_anvil() -> Path:
    """Locate anvil: $CHAINFLOW_ANVIL_BIN, the npm cache folder, or PATH. Raises: ConfigError."""
    explicit = os.environ.get("CHAINFLOW_ANVIL_BIN")
    candidates = [Path(explicit)] if explicit else []
    cache = os.environ.get("CHAINFLOW_CACHE_DIR", ".cache")
    candidates.append(Path(cache) / "anvil" / _NPM_PATH)
    on_path = shutil.which("anvil")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.resolve()
    raise ConfigError(
        "anvil not found: run ./scripts/bootstrap (installs @foundry-rs/anvil into .cache/anvil) "
        "or set CHAINFLOW_ANVIL_BIN"
    )


@asynccontextmanager
async def run_anvil(
    *, port: int, state_file: Path | None = None, extra_args: tuple[str, ...] = ()
) -> AsyncIterator[str]:
    """Start anvil on 127.0.0.1:`port`, yield its URL once it answers, stop it on exit."""
    args = ["--host", "127.0.0.1", "--port", str(port), "--max-transactions", "100000"]
    # Past states beyond those anvil keeps in memory go to ~/.foundry/anvil/tmp, and a killed
    # anvil leaves them there: ~460 MB per benchmark run, 78 GB after a day of test and
    # benchmark runs filled this machine's disk. Nothing here reads such old states.
    args += ["--max-persisted-states", "0"]
    if state_file is not None:
        args += ["--state", str(state_file)]
    process = await asyncio.create_subprocess_exec(
        str(find_anvil()),
        *args,
        *extra_args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(url, process)
        yield url
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)  # anvil dumps --state on SIGTERM
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _wait_ready(url: str, process: asyncio.subprocess.Process, timeout_s: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aiohttp.ClientSession() as http:
        client = RpcClient(http, url, timeout_s=1)
        while loop.time() < deadline:
            if process.returncode is not None:
                raise Unavailable(f"anvil exited with code {process.returncode} (port in use?)")
            try:
                await client.call("eth_chainId")
                return
            except RpcTransportError:
                await asyncio.sleep(0.05)  # polling a child process that is still binding
    raise Unavailable(f"anvil did not answer on {url} within {timeout_s:.0f} s")
