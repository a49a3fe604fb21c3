"""CPU per JSON-RPC call: Chainflow's RpcClient vs web3.py's AsyncHTTPProvider, same anvil.

Run: .venv/bin/python -m bench.rpc_client [--calls 3000] [--concurrency 16]
"""

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from eth_typing import ChecksumAddress, HexAddress, HexStr
from web3 import AsyncWeb3

from bench.report import replace_section
from chainflow.infra.anvil import run_anvil
from chainflow.infra.rpc.client import RpcClient

ADDRESS = ChecksumAddress(HexAddress(HexStr("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266")))


async def _measure(
    label: str, call: Callable[[], Awaitable[Any]], calls: int, concurrency: int
) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await call()

    await asyncio.gather(*(one() for _ in range(50)))  # warm up connections and caches
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(calls)))
    cpu_ms = (time.process_time() - cpu) * 1000 / calls
    wall_s = time.perf_counter() - wall
    print(f"{label:<34} {cpu_ms:6.3f} ms CPU/call  {calls / wall_s:8.0f} calls/s")
    return cpu_ms


async def main(calls: int, concurrency: int, port: int, write: str = "") -> None:
    command = f"python -m bench.rpc_client --calls {calls} --concurrency {concurrency}"
    async with run_anvil(port=port) as url, aiohttp.ClientSession() as http:
        ours = RpcClient(http, url)
        w3 = AsyncWeb3(AsyncWeb3.AsyncHTTPProvider(url))
        print(f"{calls} x eth_getTransactionCount, {concurrency} concurrent, one anvil")
        base = await _measure(
            "web3.py AsyncHTTPProvider",
            lambda: w3.eth.get_transaction_count(ADDRESS, "pending"),
            calls,
            concurrency,
        )
        raw = await _measure(
            "web3.py provider.make_request",
            lambda: w3.provider.make_request("eth_getTransactionCount", [ADDRESS, "pending"]),
            calls,
            concurrency,
        )
        mine = await _measure(
            "chainflow RpcClient.call",
            lambda: ours.call("eth_getTransactionCount", [ADDRESS, "pending"]),
            calls,
            concurrency,
        )
        ratio = (
            f"ratio web3.py / chainflow CPU per call: {base / mine:.1f}x"
            f" (raw provider {raw / mine:.1f}x)"
        )
        print(ratio)
        await w3.provider.disconnect()
    lines = [
        f"- web3.py AsyncHTTPProvider: {base:.3f} ms CPU per call",
        f"- web3.py provider.make_request: {raw:.3f} ms",
        f"- chainflow RpcClient.call: {mine:.3f} ms",
        f"- {ratio}",
    ]
    if write:
        replace_section(Path(write), "rpc-client", [f"`{command}`:", "", *lines])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--port", type=int, default=18645)
    parser.add_argument("--write", default="", help="put the figures in this markdown file")
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.concurrency, args.port, args.write))
