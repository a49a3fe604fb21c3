"""A real Uniswap V2 on anvil from the npm packages' build files (scripts/bootstrap installs
@uniswap/v2-core 1.0.1 and v2-periphery 1.1.0-beta.0 into .cache; never committed: GPL-3.0).

WETH9, two 18-decimals test tokens (v2-core's ERC20: the whole supply minted to the deployer),
a fee-on-transfer token (v2-periphery's DeflatingERC20), the factory and Router02, and three
pools: A/B, B/WETH and D/B. The router's hard-coded pair init
code hash matches the shipped pair bytecode (research/dca-uniswap.md §2); `deploy_dex` checks
it on chain through `factory.getPair`.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi.abi import decode, encode
from eth_utils.crypto import keccak

from chainflow.core.addresses import checksum_address
from chainflow.domain.transactions.calldata import encode_call
from chainflow.infra.rpc.client import RpcClient
from tests.support.polling import eventually

_ROOT = Path(__file__).resolve().parents[2] / ".cache" / "uniswap-v2" / "node_modules" / "@uniswap"
DEPLOYER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # anvil's unlocked account 0
E18 = 10**18
SWAP_TOPIC = "0x" + keccak(text="Swap(address,uint256,uint256,uint256,uint256,address)").hex()
PAIR_INIT_CODE_HASH = "96e8ac4277198ff8b6f785478aa9a39f403cb768dd02cbee326c3e7da348845f"


def artifact(package: str, name: str) -> dict[str, Any]:
    path = _ROOT / package / "build" / f"{name}.json"
    if not path.is_file():
        raise AssertionError(f"{path} is missing: run ./scripts/bootstrap")
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


@dataclass(frozen=True)
class Dex:
    rpc: RpcClient
    weth: str
    token_a: str
    token_b: str
    factory: str
    router: str
    deflating: str  # burns 1 % of every transfer (fee-on-transfer), pooled with token B

    async def send(
        self, to: str, function: str, args: list[Any], *, value: int = 0
    ) -> dict[str, Any]:
        """A call from the deployer, mined (anvil automines); its receipt."""
        return await _send(
            self.rpc, {"to": to, "data": _hex(encode_call(function, args)), "value": hex(value)}
        )

    async def call(
        self, to: str, function: str, args: list[Any], out: list[str]
    ) -> tuple[Any, ...]:
        raw = await self.rpc.call(
            "eth_call", [{"to": to, "data": _hex(encode_call(function, args))}, "latest"]
        )
        return tuple(decode(out, bytes.fromhex(raw[2:])))

    async def balance(self, token: str, owner: str) -> int:
        (value,) = await self.call(token, "balanceOf(address)", [owner], ["uint256"])
        return int(value)

    async def fund(self, token: str, to: str, amount: int) -> None:
        await self.send(token, "transfer(address,uint256)", [to, str(amount)])

    async def quote(self, amount_in: int, path: list[str]) -> int:
        (amounts,) = await self.call(
            self.router, "getAmountsOut(uint256,address[])", [str(amount_in), path], ["uint256[]"]
        )
        return int(amounts[-1])


async def deploy_dex(rpc: RpcClient) -> Dex:
    weth = await _deploy(rpc, artifact("v2-periphery", "WETH9"), [], [])
    erc20 = artifact("v2-core", "ERC20")
    token_a = await _deploy(rpc, erc20, ["uint256"], [10**9 * E18])
    token_b = await _deploy(rpc, erc20, ["uint256"], [10**9 * E18])
    factory = await _deploy(rpc, artifact("v2-core", "UniswapV2Factory"), ["address"], [DEPLOYER])
    router = await _deploy(
        rpc, artifact("v2-periphery", "UniswapV2Router02"), ["address", "address"], [factory, weth]
    )
    deflating = await _deploy(
        rpc, artifact("v2-periphery", "DeflatingERC20"), ["uint256"], [10**9 * E18]
    )
    dex = Dex(rpc, weth, token_a, token_b, factory, router, deflating)
    unlimited = str(2**256 - 1)
    for token in (token_a, token_b, deflating):
        await dex.send(token, "approve(address,uint256)", [router, unlimited])
    far = str(2**40)
    await dex.send(
        router,
        "addLiquidity(address,address,uint256,uint256,uint256,uint256,address,uint256)",
        [token_a, token_b, str(100_000 * E18), str(200_000 * E18), "0", "0", DEPLOYER, far],
    )
    await dex.send(
        router,
        "addLiquidityETH(address,uint256,uint256,uint256,address,uint256)",
        [token_b, str(300_000 * E18), "0", "0", DEPLOYER, far],
        value=100 * E18,
    )
    await dex.send(
        router,
        "addLiquidity(address,address,uint256,uint256,uint256,uint256,address,uint256)",
        [deflating, token_b, str(100_000 * E18), str(100_000 * E18), "0", "0", DEPLOYER, far],
    )
    (pair,) = await dex.call(factory, "getPair(address,address)", [token_a, token_b], ["address"])
    assert checksum_address(pair) == _create2_pair(factory, token_a, token_b)  # the init code hash
    return dex


def _create2_pair(factory: str, a: str, b: str) -> str:
    low, high = sorted([a.lower(), b.lower()])
    salt = keccak(bytes.fromhex(low[2:]) + bytes.fromhex(high[2:]))
    raw = keccak(b"\xff" + bytes.fromhex(factory[2:]) + salt + bytes.fromhex(PAIR_INIT_CODE_HASH))
    return checksum_address("0x" + raw[-20:].hex())


async def _deploy(rpc: RpcClient, built: dict[str, Any], types: list[str], args: list[Any]) -> str:
    code = bytes.fromhex(built["bytecode"].removeprefix("0x")) + encode(types, args)
    receipt = await _send(rpc, {"data": _hex(code)})
    return checksum_address(receipt["contractAddress"])


async def _send(rpc: RpcClient, tx: dict[str, Any]) -> dict[str, Any]:
    tx_hash = await rpc.call(
        "eth_sendTransaction", [{"from": DEPLOYER, "gas": hex(8_000_000), **tx}]
    )

    async def receipt() -> dict[str, Any] | None:
        found: dict[str, Any] | None = await rpc.call("eth_getTransactionReceipt", [tx_hash])
        return found

    mined = await eventually(receipt, timeout_s=20)
    assert int(mined["status"], 16) == 1, mined
    return mined


def swaps_in(receipt: dict[str, Any]) -> list[tuple[int, int, int, int]]:
    """(amount0In, amount1In, amount0Out, amount1Out) of each pair `Swap` log of a receipt."""
    found = []
    for log in receipt["logs"]:
        if log["topics"] and log["topics"][0] == SWAP_TOPIC:
            in0, in1, out0, out1 = decode(["uint256"] * 4, bytes.fromhex(log["data"][2:]))
            found.append((int(in0), int(in1), int(out0), int(out1)))
    return found


def _hex(data: bytes) -> str:
    return "0x" + data.hex()
