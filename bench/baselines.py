"""Same-run baselines for the end-to-end benchmark: how fast can a local anvil go without Chainflow?

1. presigned_batches      all txs signed up front, JSON-RPC batches over aiohttp: the ceiling
2. web3_async_local_nonce web3.py AsyncWeb3, local nonce counter, 64 in flight per wallet
3. web3_naive_loop        web3.py: get nonce, sign, send, wait for receipt, next (time-capped)

Each baseline gets a fresh anvil and fresh funded keys, so pool state does not leak between them.

Run: .venv/bin/python -m bench.baselines [--wallets 8] [--per-wallet 200] [--naive-limit-s 20]
"""

import argparse
import asyncio
import itertools
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from eth_account import Account
from eth_typing import ChecksumAddress, HexStr
from hexbytes import HexBytes
from web3 import AsyncWeb3

from chainflow.infra.anvil import run_anvil

CHAIN_ID = 31337
SINK = "0x000000000000000000000000000000000000dEaD"
GWEI = 10**9
MAX_FEE = 100 * GWEI
TIP = 1 * GWEI
BATCH_SIZE = 200
IN_FLIGHT_PER_WALLET = 64
FUNDING_WEI = 10**24  # 1,000,000 ETH per wallet
RECEIPT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class BaselineResult:
    name: str
    txs: int
    seconds: float
    tx_per_s: float
    p50_ms: float | None
    p99_ms: float | None

    def line(self) -> str:
        p50 = "-" if self.p50_ms is None else f"{self.p50_ms:7.1f}"
        p99 = "-" if self.p99_ms is None else f"{self.p99_ms:7.1f}"
        return (
            f"{self.name:<24} {self.txs:6d} txs {self.seconds:7.2f} s {self.tx_per_s:8.1f} tx/s"
            f"  p50 {p50} ms  p99 {p99} ms"
        )


def _result(name: str, seconds: float, latencies_s: Sequence[float]) -> BaselineResult:
    txs = len(latencies_s)
    ms = sorted(x * 1000 for x in latencies_s)
    p50 = statistics.median(ms) if ms else None
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))] if ms else None
    return BaselineResult(name, txs, seconds, txs / seconds if seconds > 0 else 0.0, p50, p99)


def _tx(nonce: int) -> dict[str, Any]:
    return {
        "type": 2,
        "chainId": CHAIN_ID,
        "nonce": nonce,
        "to": SINK,
        "value": 1,
        "gas": 21_000,
        "maxFeePerGas": MAX_FEE,
        "maxPriorityFeePerGas": TIP,
        "data": b"",
    }


def _sign(key: str, nonce: int) -> HexBytes:
    raw: HexBytes = Account.sign_transaction(_tx(nonce), key).raw_transaction
    return raw


def _address(key: str) -> ChecksumAddress:
    address: ChecksumAddress = Account.from_key(key).address
    return address


# --- plain JSON-RPC over aiohttp (baseline 1 and funding) --------------------------------------


class _BatchRpc:
    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self._http, self._url = http, url
        self._ids = itertools.count(1)

    async def call(self, method: str, params: list[Any]) -> Any:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        async with self._http.post(self._url, json=body) as response:
            reply = await response.json()
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    async def batch(self, method: str, params: Sequence[list[Any]]) -> list[Any]:
        """One HTTP request, results in `params` order; errors come back as exceptions."""
        if not params:
            return []
        first = next(self._ids)
        body = [
            {"jsonrpc": "2.0", "id": first + i, "method": method, "params": p}
            for i, p in enumerate(params)
        ]
        self._ids = itertools.count(first + len(params))
        async with self._http.post(self._url, json=body) as response:
            replies = await response.json()
        by_id = {r["id"]: r for r in replies}
        out: list[Any] = []
        for i in range(len(params)):
            reply = by_id[first + i]
            out.append(
                RuntimeError(f"{method}: {reply['error']}") if "error" in reply else reply["result"]
            )
        return out


async def fund(url: str, keys: Sequence[str], wei: int = FUNDING_WEI) -> None:
    """Give every key's address `wei` with anvil_setBalance."""
    async with aiohttp.ClientSession() as http:
        rpc = _BatchRpc(http, url)
        for error in await rpc.batch("anvil_setBalance", [[_address(k), hex(wei)] for k in keys]):
            if isinstance(error, Exception):
                raise error


# --- 1. presigned JSON-RPC batches ---------------------------------------------------------------


async def _send_batches(
    rpc: _BatchRpc, raws: Sequence[str], sent_at: dict[str, float], done: asyncio.Event
) -> None:
    for lo in range(0, len(raws), BATCH_SIZE):
        chunk = raws[lo : lo + BATCH_SIZE]
        t0 = time.perf_counter()
        for tx_hash in await rpc.batch("eth_sendRawTransaction", [[r] for r in chunk]):
            if isinstance(tx_hash, Exception):
                raise tx_hash
            sent_at[tx_hash] = t0
    done.set()


async def _poll_receipts(
    rpc: _BatchRpc, sent_at: dict[str, float], done: asyncio.Event, latencies: list[float]
) -> None:
    """Poll the oldest unconfirmed hashes (automine is FIFO, so newer ones wait anyway)."""
    pending: list[str] = []
    seen = 0
    deadline = time.perf_counter() + RECEIPT_TIMEOUT_S
    while True:
        done_sending = done.is_set()
        fresh = list(sent_at)[seen:]
        seen += len(fresh)
        pending += fresh
        if done_sending and not pending:
            return
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{len(pending)} transactions without a receipt")
        if not pending:
            await asyncio.sleep(0.005)
            continue
        head = pending[:BATCH_SIZE]
        receipts = await rpc.batch("eth_getTransactionReceipt", [[h] for h in head])
        now = time.perf_counter()
        missing = []
        for tx_hash, receipt in zip(head, receipts, strict=True):
            if isinstance(receipt, Exception) or receipt is None:
                missing.append(tx_hash)
            else:
                latencies.append(now - sent_at[tx_hash])
        pending = missing + pending[BATCH_SIZE:]
        if missing:
            await asyncio.sleep(0.005)


async def presigned_batches(url: str, keys: Sequence[str], per_wallet: int) -> BaselineResult:
    """Sign all first, then send batches of BATCH_SIZE while a poller collects receipts."""
    async with aiohttp.ClientSession() as http:
        rpc = _BatchRpc(http, url)
        starts = await rpc.batch(
            "eth_getTransactionCount", [[_address(k), "pending"] for k in keys]
        )
        # Round-robin over wallets so each batch mixes wallets yet keeps every wallet's nonce order.
        raws = [
            "0x" + _sign(key, int(start, 16) + i).hex().removeprefix("0x")
            for i in range(per_wallet)
            for key, start in zip(keys, starts, strict=True)
        ]
        sent_at: dict[str, float] = {}
        latencies: list[float] = []
        done = asyncio.Event()
        t0 = time.perf_counter()
        await asyncio.gather(
            _send_batches(rpc, raws, sent_at, done), _poll_receipts(rpc, sent_at, done, latencies)
        )
        seconds = time.perf_counter() - t0
    return _result("presigned_batches", seconds, latencies)


# --- 2. web3.py with a local nonce counter -------------------------------------------------------


async def web3_async_local_nonce(url: str, keys: Sequence[str], per_wallet: int) -> BaselineResult:
    """AsyncWeb3, nonce read once per wallet, sends in nonce order, up to 64 unconfirmed each."""
    w3 = AsyncWeb3(AsyncWeb3.AsyncHTTPProvider(url))
    latencies: list[float] = []

    async def wallet(key: str) -> None:
        address = _address(key)
        nonce = await w3.eth.get_transaction_count(address, "pending")
        gate = asyncio.Semaphore(IN_FLIGHT_PER_WALLET)
        waiters: list[asyncio.Task[None]] = []

        async def confirm(tx_hash: HexBytes, sent: float) -> None:
            try:
                receipt = await w3.eth.wait_for_transaction_receipt(tx_hash)
                if receipt["status"] != 1:
                    raise RuntimeError(f"reverted: {tx_hash.hex()}")
                latencies.append(time.perf_counter() - sent)
            finally:
                gate.release()

        for i in range(per_wallet):
            await gate.acquire()
            raw = _sign(key, nonce + i)
            sent = time.perf_counter()
            tx_hash = await w3.eth.send_raw_transaction(raw)
            waiters.append(asyncio.create_task(confirm(tx_hash, sent)))
        await asyncio.gather(*waiters)

    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(wallet(k) for k in keys))
        seconds = time.perf_counter() - t0
    finally:
        await w3.provider.disconnect()
    return _result("web3_async_local_nonce", seconds, latencies)


# --- 3. the naive web3.py loop -------------------------------------------------------------------


async def web3_naive_loop(
    url: str, keys: Sequence[str], per_wallet: int, limit_s: float = 20.0
) -> BaselineResult:
    """Per wallet: pending nonce, sign, send, wait for the receipt, next; stops after `limit_s`."""
    w3 = AsyncWeb3(AsyncWeb3.AsyncHTTPProvider(url))
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s

    async def wallet(key: str) -> None:
        address = _address(key)
        for _ in range(per_wallet):
            if loop.time() >= deadline:
                return
            nonce = await w3.eth.get_transaction_count(address, "pending")
            raw = _sign(key, nonce)
            sent = time.perf_counter()
            tx_hash = await w3.eth.send_raw_transaction(raw)
            await w3.eth.wait_for_transaction_receipt(tx_hash)
            latencies.append(time.perf_counter() - sent)

    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(wallet(k) for k in keys))
        seconds = time.perf_counter() - t0
    finally:
        await w3.provider.disconnect()
    return _result("web3_naive_loop", seconds, latencies)


# --- command line --------------------------------------------------------------------------------


def fresh_keys(count: int) -> list[str]:
    return [HexStr(Account.create().key.hex()) for _ in range(count)]


async def on_fresh_anvil(
    run: Callable[[str, list[str]], Awaitable[BaselineResult]], wallets: int
) -> BaselineResult:
    keys = fresh_keys(wallets)
    async with run_anvil() as url:
        await fund(url, keys)
        return await run(url, keys)


async def main(wallets: int, per_wallet: int, naive_limit_s: float) -> list[BaselineResult]:
    print(f"{wallets} wallets x {per_wallet} txs, fresh anvil per baseline")
    runs: list[Callable[[str, list[str]], Awaitable[BaselineResult]]] = [
        lambda url, keys: presigned_batches(url, keys, per_wallet),
        lambda url, keys: web3_async_local_nonce(url, keys, per_wallet),
        lambda url, keys: web3_naive_loop(url, keys, per_wallet, naive_limit_s),
    ]
    results = []
    for run in runs:
        result = await on_fresh_anvil(run, wallets)
        print(result.line(), flush=True)
        results.append(result)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wallets", type=int, default=8)
    parser.add_argument("--per-wallet", type=int, default=200)
    parser.add_argument("--naive-limit-s", type=float, default=20.0)
    args = parser.parse_args()
    asyncio.run(main(args.wallets, args.per_wallet, args.naive_limit_s))
