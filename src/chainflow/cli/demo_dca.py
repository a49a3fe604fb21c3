"""The DCA demo of `chainflow dev --anvil --demo-dca`: a real Uniswap V2 on the dev anvil, a
schedule that swaps token A for token B every few seconds from the dev wallet, and each run
with the running average price, as a client of the HTTP API sees them."""

import asyncio
from decimal import Decimal
from typing import Any

import aiohttp
from rich.console import Console

from chainflow.cli.demo import retry_after
from chainflow.cli.dex import E18, Dex, deploy_dex, swaps_in
from chainflow.infra.rpc.client import RpcClient

DEX_DEPLOYER = "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f"  # anvil's unlocked account 8
RUNS = 20
AMOUNT_IN = 10 * E18  # token A per run
_BUSY_TRIES = 300  # 503/429 answers waited out per request (~5 min), as the burst demo does
_POLL_S = 0.5
_FINAL_RUNS = ("succeeded", "failed", "skipped")


class Api:
    """The demo's HTTP client: JSON in and out, a busy API (503, 429) waited out."""

    def __init__(self, http: aiohttp.ClientSession, api_url: str) -> None:
        self.http, self.api_url = http, api_url

    async def __call__(self, method: str, path: str, body: Any = None) -> Any:
        for _ in range(_BUSY_TRIES):
            async with self.http.request(method, self.api_url + path, json=body) as response:
                payload = await response.json(content_type=None)
                if response.status < 300:
                    return payload
                if response.status not in (429, 503):
                    detail = payload.get("detail") if isinstance(payload, dict) else payload
                    raise RuntimeError(f"{method} {path} failed ({response.status}): {detail}")
                wait_s = retry_after(response.headers.get("Retry-After"))
            await asyncio.sleep(wait_s)
        raise RuntimeError(f"{method} {path}: the API stayed busy for {_BUSY_TRIES} tries")


class Tally:
    """What the succeeded runs swapped, for the average price (token A per token B)."""

    def __init__(self) -> None:
        self.swaps, self.paid, self.got = 0, 0, 0

    def add(self, paid: int, got: int) -> None:
        self.swaps, self.paid, self.got = self.swaps + 1, self.paid + paid, self.got + got

    @property
    def average(self) -> Decimal:
        return Decimal(self.paid) / Decimal(self.got) if self.got else Decimal(0)


async def run_dca_demo(
    *, api_url: str, token: str, anvil_url: str, wallet: str, interval_s: int
) -> None:
    """Deploy the DEX, fund the wallet with token A, create the schedule, print its runs until
    it completes."""
    console = Console(stderr=True, soft_wrap=True)  # a run per line, whatever the width
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as node, aiohttp.ClientSession(headers=headers) as http:
        dex = await deploy_dex(RpcClient(node, anvil_url), deployer=DEX_DEPLOYER)
        await dex.fund(dex.token_a, wallet, RUNS * AMOUNT_IN)
        console.print(
            f"[bold]DCA demo[/bold]: Uniswap V2 on anvil (router {dex.router}); the dev wallet "
            f"swaps {_units(AMOUNT_IN)} A for B every {interval_s} s, {RUNS} runs"
        )
        api = Api(http, api_url)
        schedule = await api("POST", "/v1/schedules", _schedule_body(dex, wallet, interval_s))
        tally = await _follow(api, dex, schedule["id"], console)
    console.print(
        f"[bold]DCA schedule done[/bold]: {tally.swaps} swaps, {_units(tally.paid)} A for "
        f"{_units(tally.got)} B, average price {tally.average:.6f} A per B"
    )


def _schedule_body(dex: Dex, wallet: str, interval_s: int) -> dict[str, Any]:
    return {
        "wallet": wallet,
        "chain_id": 31337,
        "trigger": {"interval_s": interval_s},
        "max_runs": RUNS,
        "action": {
            "type": "dca_swap",
            "router": dex.router,
            "token_in": dex.token_a,
            "token_out": dex.token_b,
            "amount_in": str(AMOUNT_IN),
            "slippage_bps": 100,
            "deadline_s": 120,
        },
    }


async def _follow(api: Api, dex: Dex, schedule_id: str, console: Console) -> Tally:
    """Print each run once it is over, until the schedule is no longer active and every run
    it made is over."""
    tally, shown = Tally(), set[str]()
    while True:
        runs = (await api("GET", f"/v1/schedules/{schedule_id}/runs?limit=500"))["items"]
        for number, run in enumerate(runs, start=1):
            if run["id"] not in shown and run["status"] in _FINAL_RUNS:
                shown.add(run["id"])
                console.print(await _line(api, dex, number, run, tally))
        schedule = await api("GET", f"/v1/schedules/{schedule_id}")
        if schedule["status"] != "active" and len(shown) == len(runs):
            return tally
        await asyncio.sleep(_POLL_S)  # polling the API for the next run, as a client would


async def _line(api: Api, dex: Dex, number: int, run: dict[str, Any], tally: Tally) -> str:
    at = run["scheduled_for"][11:19]
    if run["status"] != "succeeded" or not run.get("transaction_id"):
        return f"dca run {number} at {at}: {run['status']}: {run.get('reason') or ''}"
    tx = await api("GET", f"/v1/transactions/{run['transaction_id']}")
    receipt = await dex.rpc.call("eth_getTransactionReceipt", [tx["hash"]])
    swaps = swaps_in(receipt or {})
    if not swaps:
        return f"dca run {number} at {at}: succeeded (no Swap log found in {tx['hash']})"
    paid, got = int(run["amount_in"] or AMOUNT_IN), max(swaps[-1][2], swaps[-1][3])
    tally.add(paid, got)
    return (
        f"dca run {number} at {at}: succeeded: {_units(paid)} A for {_units(got)} B at "
        f"{Decimal(paid) / Decimal(got):.6f} A per B; average {tally.average:.6f} over "
        f"{tally.swaps} swap(s) (tx {tx['hash'][:12]}…)"
    )


def _units(amount: int) -> str:
    return f"{Decimal(amount) / Decimal(E18):.4f}"
