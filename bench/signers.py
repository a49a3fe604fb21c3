"""What a signer backend costs (issue 20): signing rate per backend, and end-to-end tx/s of one
wallet on each, in the same run.

Backends: local (a sealed key), PKCS#11 (SoftHSM2, a software token: a hardware HSM is
slower), AWS KMS (LocalStack over loopback: real KMS adds a network round trip of a few ms and
a per-account quota). Signing: full EIP-1559 transactions through each Signer (digest, backend
signature, low-s, recovery id, encoding), one at a time and 8 at once. End to end: `chainflow
api` + one `chainflow worker`, one wallet of each backend bound over HTTP, then for each wallet
alone: its requests submitted, time until all are confirmed.

    .venv/bin/python -m bench.signers --signs 300 --per-wallet 200 --write docs/benchmarks.md
"""

import argparse
import asyncio
import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from tests.support.localstack import AWS_ENV, run_localstack
from tests.support.softhsm import start_softhsm

from bench.cluster import Running, run_shape
from bench.e2e import submit_all, wait_confirmed
from bench.report import replace_section
from chainflow.infra.anvil import run_anvil
from chainflow.infra.signing.aws_kms import AwsKms, AwsKmsConfig, AwsKmsSigner
from chainflow.infra.signing.local import LocalSigner, generate_private_key
from chainflow.infra.signing.pkcs11 import Pkcs11Signer, Pkcs11Token
from chainflow.infra.signing.signer import Signer

SINK = "0x000000000000000000000000000000000000dEaD"
BACKENDS = ["local", "pkcs11", "aws_kms"]


def _tx(nonce: int) -> dict[str, Any]:
    return {
        "chainId": 31337,
        "nonce": nonce,
        "to": SINK,
        "value": 1,
        "gas": 21_000,
        "data": b"",
        "type": 2,
        "maxFeePerGas": 20 * 10**9,
        "maxPriorityFeePerGas": 10**9,
    }


async def signing_rate(signer: Signer, count: int, concurrency: int) -> float:
    """Transactions signed per second, `concurrency` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(nonce: int) -> None:
        async with gate:
            await signer.sign_transaction(_tx(nonce))

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(count)))
    return count / (time.perf_counter() - started)


async def _bind(run: Running, spec: dict[str, Any]) -> str:
    headers = {"Authorization": f"Bearer {run.token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        body = {"signer": spec, "chain_ids": [31337]}
        async with http.post(f"{run.api_url}/v1/wallets", json=body) as response:
            if response.status != 201:
                raise RuntimeError(f"binding {spec} failed: {await response.text()}")
            return str((await response.json())["address"])


async def end_to_end(run: Running, anvil_url: str, per_wallet: int) -> dict[str, float]:
    """tx/s of one wallet of each backend, run one after the other on the same processes."""
    wallets = {
        "local": run.addresses[0],
        "pkcs11": await _bind(run, {"type": "pkcs11", "generate": True}),
        "aws_kms": await _bind(run, {"type": "aws_kms", "generate": True}),
    }
    async with aiohttp.ClientSession() as http:
        for address in wallets.values():
            payload = {"jsonrpc": "2.0", "id": 1, "method": "anvil_setBalance"}
            payload["params"] = [address, hex(10**24)]
            async with http.post(anvil_url, json=payload) as response:
                await response.read()
    rates: dict[str, float] = {}
    confirmed = 0
    for backend, address in wallets.items():
        started = time.perf_counter()
        _, errors = await submit_all(
            dataclasses.replace(run, addresses=[address]), per_wallet, concurrency=16
        )
        if errors:
            raise RuntimeError(f"{errors} requests of the {backend} wallet were refused")
        confirmed += per_wallet
        await wait_confirmed(run.database_url, confirmed, timeout_s=300)
        rates[backend] = per_wallet / (time.perf_counter() - started)
    return rates


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="cf-bench-signers-"))
    softhsm = start_softhsm(folder / "softhsm")
    token = Pkcs11Token(softhsm.config)
    with run_localstack(folder / "localstack") as localstack:
        kms_env = {**AWS_ENV, "CHAINFLOW_AWS_KMS_ENDPOINT_URL": localstack.url}
        os.environ.update(AWS_ENV)  # this process's own KMS client reads the standard chain
        kms = AwsKms(AwsKmsConfig(localstack.url, 10.0, 10_000.0, 4))
        signers: dict[str, Signer] = {
            "local": LocalSigner(generate_private_key()),
            "pkcs11": await _pkcs11(token),
            "aws_kms": await _kms(kms),
        }
        rates: dict[str, tuple[float, float]] = {}
        for backend, signer in signers.items():
            await signing_rate(signer, 20, 1)  # warm: connections, caches
            rates[backend] = (
                await signing_rate(signer, args.signs, 1),
                await signing_rate(signer, args.signs, 8),
            )
            print(f"{backend}: {rates[backend][0]:.0f} tx/s signed, {rates[backend][1]:.0f} at 8")
        async with run_anvil() as anvil_url:
            settings = softhsm.env() | kms_env
            async with run_shape(
                "distributed", anvil_url, 1, folder, workers=1, settings=settings
            ) as run:
                e2e = await end_to_end(run, anvil_url, args.per_wallet)
    token.close()
    lines = [
        f"Signers ({args.signs} EIP-1559 signatures per backend; {args.per_wallet} requests of "
        "one wallet end to end, 1 api + 1 worker on PostgreSQL, anvil automine):",
        "",
        "| backend | signed tx/s, 1 at once | signed tx/s, 8 at once | end to end tx/s, 1 wallet |",
        "| --- | ---: | ---: | ---: |",
    ]
    for backend in BACKENDS:
        one, eight = rates[backend]
        lines.append(f"| {backend} | {one:,.0f} | {eight:,.0f} | {e2e[backend]:,.1f} |")
    print("\n".join(lines))
    if args.write:
        replace_section(Path(args.write), "signers", lines)


async def _pkcs11(token: Pkcs11Token) -> Signer:
    label, public_key = await asyncio.to_thread(token.generate)
    return Pkcs11Signer(token, label, public_key)


async def _kms(kms: AwsKms) -> Signer:
    arn, public_key = await kms.public_key(await kms.create_key())
    return AwsKmsSigner(kms, arn, public_key)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--signs", type=int, default=300)
    parser.add_argument("--per-wallet", type=int, default=200)
    parser.add_argument("--write", default="", help="docs/benchmarks.md to update")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
