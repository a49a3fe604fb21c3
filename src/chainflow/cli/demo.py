"""The embedded demo: a burst of transfers and contract calls over the real HTTP API."""

import asyncio
import statistics
import time
from collections import Counter
from datetime import datetime
from typing import Any

import aiohttp
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chainflow.core.numerals import delay_seconds
from chainflow.infra.rpc.client import RpcClient

# A 7-byte contract: store(uint256) writes its argument to slot 0 (PUSH1 4 CALLDATALOAD
# PUSH1 0 SSTORE STOP), deployed by a 12-byte constructor that returns it.
STORE_INIT_CODE = "0x6007600c60003960076000f3" + "6004356000" + "5500"
_DEPLOYER = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"  # anvil's unlocked account 9
_SINK = "0x000000000000000000000000000000000000dEaD"
_FINAL = {"confirmed", "reverted", "failed", "cancelled", "expired"}
_SUBMIT_TRIES = 300  # 503/429 answers waited out per request (~5 min) before the demo gives up


async def deploy_store_contract(rpc: RpcClient) -> str:
    """Deploy the demo contract from an anvil account and return its address."""
    tx_hash = await rpc.call("eth_sendTransaction", [{"from": _DEPLOYER, "data": STORE_INIT_CODE}])
    for _ in range(100):
        receipt = await rpc.call("eth_getTransactionReceipt", [tx_hash])
        if receipt:
            return str(receipt["contractAddress"])
        await asyncio.sleep(0.05)  # waiting for anvil to mine the deployment
    raise RuntimeError("demo contract was not mined")


def _requests(wallet: str, contract: str, count: int) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    for i in range(count):
        if i % 4 == 3:
            bodies.append(
                {
                    "chain_id": 31337,
                    "wallet": wallet,
                    "to": contract,
                    "function": "store(uint256)",
                    "args": [str(i)],
                }
            )
        else:
            bodies.append({"chain_id": 31337, "wallet": wallet, "to": _SINK, "value": str(i + 1)})
    return bodies


async def run_demo(*, api_url: str, token: str, anvil_url: str, wallet: str, count: int) -> None:
    """Submit `count` requests, show progress until all are final, print a summary."""
    console = Console(stderr=True)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        contract = await deploy_store_contract(RpcClient(http, anvil_url))
        started = time.monotonic()
        ids = await _submit_all(http, api_url, _requests(wallet, contract, count))
        submit_s = time.monotonic() - started
        rows = await _wait_all(http, api_url, ids, console)
    _summary(console, rows, submit_s=submit_s, wall_s=time.monotonic() - started)


async def _submit_all(
    http: aiohttp.ClientSession, api_url: str, bodies: list[dict[str, Any]]
) -> list[str]:
    gate = asyncio.Semaphore(32)

    async def one(index: int, body: dict[str, Any]) -> str:
        # A busy API answers 503 or 429 with Retry-After: wait and send again with the same
        # idempotency key, as a careful client does (the request is created at most once).
        for _ in range(_SUBMIT_TRIES):
            async with (
                gate,
                http.post(
                    f"{api_url}/v1/transactions",
                    json=body,
                    headers={"Idempotency-Key": f"demo-{index}"},
                ) as response,
            ):
                payload = await response.json()
                if response.status == 202:
                    return str(payload["id"])
                if response.status not in (429, 503):
                    raise RuntimeError(f"submit failed: {payload.get('detail')}")
                wait_s = retry_after(response.headers.get("Retry-After"))
            await asyncio.sleep(wait_s)
        raise RuntimeError(f"submit failed: the API stayed busy for {_SUBMIT_TRIES} tries")

    return await asyncio.gather(*(one(i, body) for i, body in enumerate(bodies)))


def retry_after(header: str | None) -> float:
    """Seconds to wait from a Retry-After header (seconds form), 1 s if absent or unreadable
    (float() took "nan", which no bound clamps), at least 0.1 and at most 10."""
    seconds = delay_seconds(header, max_s=10.0)
    return 1.0 if seconds is None else max(seconds, 0.1)


async def _wait_all(
    http: aiohttp.ClientSession, api_url: str, ids: list[str], console: Console
) -> list[dict[str, Any]]:
    final: dict[str, dict[str, Any]] = {}
    columns = (TextColumn("confirming"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("txs", total=len(ids))
        while len(final) < len(ids):
            for tx_id in [i for i in ids if i not in final]:
                async with http.get(f"{api_url}/v1/transactions/{tx_id}") as response:
                    tx = await response.json()
                if tx["status"] in _FINAL:
                    final[tx_id] = tx
            progress.update(task, completed=len(final))
            if len(final) < len(ids):
                await asyncio.sleep(0.25)  # polling the API for progress, as a client would
    return list(final.values())


def _seconds(tx: dict[str, Any]) -> float:
    created = datetime.fromisoformat(tx["created_at"])
    done = datetime.fromisoformat(tx["events"][-1]["at"])
    return (done - created).total_seconds()


def _summary(
    console: Console, rows: list[dict[str, Any]], *, submit_s: float, wall_s: float
) -> None:
    counts = Counter(tx["status"] for tx in rows)
    latencies = sorted(_seconds(tx) for tx in rows)
    pct = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    console.print(
        f"[bold]{len(rows)} requests[/bold]: "
        + ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
    )
    console.print(
        f"submitted over the API in {submit_s:.2f} s; all final after {wall_s:.2f} s "
        f"= {len(rows) / wall_s:.1f} tx/s end to end"
    )
    console.print(
        f"latency request → final: p50 {pct[49]:.2f} s, p90 {pct[89]:.2f} s, "
        f"p99 {pct[98]:.2f} s, max {latencies[-1]:.2f} s"
    )
