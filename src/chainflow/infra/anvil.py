"""A local anvil chain as a child process: find the binary, start it, wait until it answers."""

import asyncio
import contextlib
import os
import re
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
    *, port: int = 0, state_file: Path | None = None, extra_args: tuple[str, ...] = ()
) -> AsyncIterator[str]:
    """Start anvil on 127.0.0.1:`port` (0: a port the OS picks at anvil's own bind), yield its
    URL once this anvil listens and answers, stop it on exit.

    The port is the one anvil says it listens on ("Listening on 127.0.0.1:PORT", once bound):
    with port 0 no other process can take it first, as it could a port picked free beforehand;
    and a port another process holds makes anvil exit (Unavailable) instead of letting the
    other process's server answer as if it were this anvil."""
    args = ["--host", "127.0.0.1", "--port", str(port), "--max-transactions", "100000"]
    # Past states beyond those anvil keeps in memory go to ~/.foundry/anvil/tmp, and a killed
    # anvil leaves them there: ~460 MB per benchmark run, 78 GB after a day of test and
    # benchmark runs filled this machine's disk. Nothing here reads such old states.
    args += ["--max-persisted-states", "0"]
    if state_file is not None:
        args += ["--state", str(state_file)]
    # anvil's stdout and stderr come through a pipe: its banner says where it listens, then a
    # line per RPC call follows, read and dropped as it comes (kept in a file, they grew by
    # ~12 bytes a call for as long as `chainflow dev` ran; left unread, a full pipe blocks it).
    process = await asyncio.create_subprocess_exec(
        str(find_anvil()),
        *args,
        *extra_args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None  # noqa: S101 - asked for above
    drain: asyncio.Task[None] | None = None
    try:
        url = await _wait_listening(process.stdout, process)
        drain = asyncio.create_task(_discard(process.stdout))
        await _wait_ready(url, process)
        yield url
    finally:
        await _stop(process)
        if drain is not None:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain


async def _discard(stream: asyncio.StreamReader) -> None:
    """Read anvil's output after its banner until it closes, keeping none of it."""
    while await stream.read(65_536):
        pass


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)  # anvil dumps --state on SIGTERM
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except TimeoutError:
            process.kill()
            await process.wait()


_LISTENING = re.compile(rb"^Listening on ([0-9.]+):([0-9]+)\s*$")
_BANNER_MAX_LINES = 1_000  # the banner is ~60 lines


async def _wait_listening(
    stream: asyncio.StreamReader, process: asyncio.subprocess.Process, timeout_s: float = 30
) -> str:
    """The URL anvil says it listens on, read from its output.
    Raises: Unavailable (it exited first, or said nothing in time)."""
    last = b"no output"
    try:
        async with asyncio.timeout(timeout_s):
            for _ in range(_BANNER_MAX_LINES):
                line = await stream.readline()
                if not line:  # its output closed: it exited
                    await process.wait()
                    text = last.decode(errors="replace").strip()
                    raise Unavailable(f"anvil exited with code {process.returncode}: {text}")
                found = _LISTENING.match(line)
                if found:
                    return f"http://{found[1].decode()}:{int(found[2])}"
                if line.strip():
                    last = line[:300]
    except TimeoutError:
        pass
    raise Unavailable(f"anvil did not say where it listens within {timeout_s:.0f} s")


async def _wait_ready(url: str, process: asyncio.subprocess.Process, timeout_s: float = 30) -> None:
    """Until this anvil (it holds the port) answers on `url`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aiohttp.ClientSession() as http:
        client = RpcClient(http, url, timeout_s=1)
        while loop.time() < deadline:
            if process.returncode is not None:
                raise Unavailable(f"anvil exited with code {process.returncode}")
            try:
                await client.call("eth_chainId")
                return
            except RpcTransportError:
                await asyncio.sleep(0.05)  # polling a child process that is still starting
    raise Unavailable(f"anvil did not answer on {url} within {timeout_s:.0f} s")
