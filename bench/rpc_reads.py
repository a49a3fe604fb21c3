"""What anvil and the client spend on each JSON-RPC read the engine makes per transaction,
against what anvil spends to take and mine the transaction itself.

A fresh anvil; 32 funded wallets send N pre-signed plain transfers in JSON-RPC batches of 100
(the shape of issue 17's batch run) and the run waits until all are mined. Then each read is
made once per transaction, in the engine's batch sizes: receipts by hash (500), receipts by
block (`eth_getBlockReceipts`, 50 blocks), gas estimates (200), `eth_getCode` and nonce counts
(200). Printed per transaction: anvil's CPU (user + system, psutil) and this process's.

Run: .venv/bin/python -m bench.rpc_reads [--wallets 32] [--per-wallet 156] [--rounds 2]
"""

import argparse
import asyncio
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import psutil

from bench import baselines
from chainflow.infra.anvil import run_anvil
from chainflow.infra.rpc.client import Call, RpcClient


def _anvil_cpu_s() -> float:
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        if "anvil" in child.name():
            times = child.cpu_times()
            total += times.user + times.system
    return total


async def _measure(
    rpc: RpcClient, label: str, calls: Sequence[Call], chunk: int, txs: int
) -> list[Any]:
    anvil, own, wall = _anvil_cpu_s(), time.process_time(), time.perf_counter()
    answers: list[Any] = []
    for start in range(0, len(calls), chunk):
        answers += await rpc.batch(calls[start : start + chunk])
    anvil_us = (_anvil_cpu_s() - anvil) * 1e6 / txs
    own_us = (time.process_time() - own) * 1e6 / txs
    seconds = time.perf_counter() - wall
    print(
        f"{label:<34} {len(calls):6} items  anvil {anvil_us:6.1f} µs/tx  "
        f"client {own_us:5.1f} µs/tx  {seconds:5.2f} s"
    )
    return answers


async def _mined(rpc: RpcClient, hashes: Sequence[str], deadline_s: float = 60) -> None:
    deadline = time.perf_counter() + deadline_s
    while time.perf_counter() < deadline:
        tail = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes[-5:]])
        if all(isinstance(r, dict) for r in tail):
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("the last transactions were not mined in time")


async def main(wallets: int, per_wallet: int, rounds: int) -> None:
    keys = baselines.fresh_keys(wallets)
    addresses = [baselines._address(k) for k in keys]
    sink = baselines.SINK
    async with run_anvil() as url, aiohttp.ClientSession() as http:
        await baselines.fund(url, keys)
        rpc = RpcClient(http, url)
        raws = [
            "0x" + baselines._sign(key, nonce).hex().removeprefix("0x")
            for nonce in range(per_wallet)
            for key in keys
        ]
        txs = len(raws)
        anvil = _anvil_cpu_s()
        hashes: list[str] = []
        for start in range(0, txs, 100):
            sent = await rpc.batch([("eth_sendRawTransaction", [r]) for r in raws[start:][:100]])
            hashes += [h for h in sent if isinstance(h, str)]
        await _mined(rpc, hashes)
        print(
            f"send + mine, batches of 100: anvil {(_anvil_cpu_s() - anvil) * 1e6 / txs:.1f} µs/tx"
        )
        estimate = {"to": sink, "value": "0x1", "data": "0x"}
        for _ in range(rounds):
            receipts = await _measure(
                rpc,
                "eth_getTransactionReceipt",
                [("eth_getTransactionReceipt", [h]) for h in hashes],
                500,
                txs,
            )
            blocks = sorted({r["blockNumber"] for r in receipts if isinstance(r, dict)})
            await _measure(
                rpc,
                f"eth_getBlockReceipts ({len(blocks)} blocks)",
                [("eth_getBlockReceipts", [b]) for b in blocks],
                50,
                txs,
            )
            await _measure(
                rpc,
                "eth_estimateGas",
                [
                    ("eth_estimateGas", [{"from": addresses[i % wallets], **estimate}])
                    for i in range(txs)
                ],
                200,
                txs,
            )
            await _measure(rpc, "eth_getCode", [("eth_getCode", [sink, "latest"])] * txs, 200, txs)
            await _measure(
                rpc,
                "eth_getTransactionCount",
                [
                    ("eth_getTransactionCount", [addresses[i % wallets], "latest"])
                    for i in range(txs)
                ],
                200,
                txs,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wallets", type=int, default=32)
    parser.add_argument("--per-wallet", type=int, default=156)
    parser.add_argument("--rounds", type=int, default=2)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.wallets, arguments.per_wallet, arguments.rounds))
