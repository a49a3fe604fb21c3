"""A real Uniswap V2 on a local anvil, from the npm packages' build files (`chainflow dev
--demo-dca`, and the DCA tests' fixture).

`scripts/bootstrap` installs @uniswap/v2-core 1.0.1 and @uniswap/v2-periphery 1.1.0-beta.0
into `.cache/uniswap-v2` (`$CHAINFLOW_CACHE_DIR/uniswap-v2`); they are GPL-3.0, so they are
read as JSON at run time and never committed or shipped. Deployed from an unlocked anvil
account: WETH9, two 18-decimals test tokens (v2-core's ERC20: the whole supply minted to the
deployer), a fee-on-transfer token (v2-periphery's DeflatingERC20), the factory, Router02, and
three pools: A/B, B/WETH and D/B. The router's hard-coded pair init code hash matches the
shipped pair bytecode (research/dca-uniswap.md §2); `deploy_dex` checks it through
`factory.getPair`.
"""

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi.abi import decode, encode
from eth_utils.crypto import keccak

from chainflow.core.addresses import checksum_address
from chainflow.core.errors import ConfigError
from chainflow.domain.transactions.calldata import encode_call
from chainflow.infra.rpc.answers import hex_data, quantity
from chainflow.infra.rpc.client import RpcClient

E18 = 10**18
SWAP_TOPIC = "0x" + keccak(text="Swap(address,uint256,uint256,uint256,uint256,address)").hex()
PAIR_INIT_CODE_HASH = "96e8ac4277198ff8b6f785478aa9a39f403cb768dd02cbee326c3e7da348845f"
INSTALL_HINT = (
    "run ./scripts/bootstrap (it installs @uniswap/v2-core@1.0.1 and "
    "@uniswap/v2-periphery@1.1.0-beta.0 there with npm)"
)
_FILES = {
    "v2-core": ("ERC20", "UniswapV2Factory"),
    "v2-periphery": ("WETH9", "UniswapV2Router02", "DeflatingERC20"),
}
_FAR_DEADLINE = str(2**40)


def build_root() -> Path:
    """Where the build files are looked for: `$CHAINFLOW_CACHE_DIR` (default `.cache`)."""
    cache = Path(os.environ.get("CHAINFLOW_CACHE_DIR", ".cache"))
    return cache / "uniswap-v2" / "node_modules" / "@uniswap"


def check_build_files(root: Path | None = None) -> Path:
    """The folder holding every build file the DEX needs.

    Raises: ConfigError, one line naming the folder and the command that installs them.
    """
    folder = root or build_root()
    missing = [
        name
        for package, names in _FILES.items()
        for name in names
        if not (folder / package / "build" / f"{name}.json").is_file()
    ]
    if missing:
        where = folder.parent.parent
        raise ConfigError(f"the Uniswap V2 build files are not in {where}: {INSTALL_HINT}")
    return folder


def artifact(root: Path, package: str, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((root / package / "build" / f"{name}.json").read_text())
    return loaded


@dataclass(frozen=True)
class Dex:
    rpc: RpcClient
    deployer: str  # an unlocked anvil account: holds the tokens' supply and the liquidity
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
        data = "0x" + encode_call(function, args).hex()
        return await _send(self.rpc, self.deployer, {"to": to, "data": data, "value": hex(value)})

    async def call(
        self, to: str, function: str, args: list[Any], out: list[str]
    ) -> tuple[Any, ...]:
        data = "0x" + encode_call(function, args).hex()
        raw = await self.rpc.call("eth_call", [{"to": to, "data": data}, "latest"])
        return tuple(decode(out, bytes.fromhex(hex_data(raw)[2:])))

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


async def deploy_dex(rpc: RpcClient, *, deployer: str, root: Path | None = None) -> Dex:
    """Deploy the contracts and pools from `deployer` (an unlocked anvil account).

    Raises: ConfigError (the build files are missing), RuntimeError (a deployment failed).
    """
    folder = check_build_files(root)
    weth = await _deploy(rpc, deployer, artifact(folder, "v2-periphery", "WETH9"), [], [])
    erc20 = artifact(folder, "v2-core", "ERC20")
    token_a = await _deploy(rpc, deployer, erc20, ["uint256"], [10**9 * E18])
    token_b = await _deploy(rpc, deployer, erc20, ["uint256"], [10**9 * E18])
    factory_built = artifact(folder, "v2-core", "UniswapV2Factory")
    factory = await _deploy(rpc, deployer, factory_built, ["address"], [deployer])
    router_built = artifact(folder, "v2-periphery", "UniswapV2Router02")
    router = await _deploy(rpc, deployer, router_built, ["address", "address"], [factory, weth])
    deflating_built = artifact(folder, "v2-periphery", "DeflatingERC20")
    deflating = await _deploy(rpc, deployer, deflating_built, ["uint256"], [10**9 * E18])
    dex = Dex(rpc, checksum_address(deployer), weth, token_a, token_b, factory, router, deflating)
    await _add_pools(dex)
    (pair,) = await dex.call(factory, "getPair(address,address)", [token_a, token_b], ["address"])
    if checksum_address(pair) != _create2_pair(factory, token_a, token_b):
        raise RuntimeError("the router's pair init code hash does not match the pair bytecode")
    return dex


async def _add_pools(dex: Dex) -> None:
    unlimited = str(2**256 - 1)
    for token in (dex.token_a, dex.token_b, dex.deflating):
        await dex.send(token, "approve(address,uint256)", [dex.router, unlimited])
    add = "addLiquidity(address,address,uint256,uint256,uint256,uint256,address,uint256)"
    pools = [(dex.token_a, 100_000, 200_000), (dex.deflating, 100_000, 100_000)]
    for token, amount, amount_b in pools:
        amounts = [str(amount * E18), str(amount_b * E18), "0", "0"]
        args = [token, dex.token_b, *amounts, dex.deployer, _FAR_DEADLINE]
        await dex.send(dex.router, add, args)
    await dex.send(
        dex.router,
        "addLiquidityETH(address,uint256,uint256,uint256,address,uint256)",
        [dex.token_b, str(300_000 * E18), "0", "0", dex.deployer, _FAR_DEADLINE],
        value=100 * E18,
    )


def _create2_pair(factory: str, a: str, b: str) -> str:
    low, high = sorted([a.lower(), b.lower()])
    salt = keccak(bytes.fromhex(low[2:]) + bytes.fromhex(high[2:]))
    raw = keccak(b"\xff" + bytes.fromhex(factory[2:]) + salt + bytes.fromhex(PAIR_INIT_CODE_HASH))
    return checksum_address("0x" + raw[-20:].hex())


async def _deploy(
    rpc: RpcClient, deployer: str, built: dict[str, Any], types: list[str], args: list[Any]
) -> str:
    code = bytes.fromhex(built["bytecode"].removeprefix("0x")) + encode(types, args)
    receipt = await _send(rpc, deployer, {"data": "0x" + code.hex()})
    return checksum_address(receipt["contractAddress"])


async def _send(rpc: RpcClient, deployer: str, tx: dict[str, Any]) -> dict[str, Any]:
    tx_hash = await rpc.call(
        "eth_sendTransaction", [{"from": deployer, "gas": hex(8_000_000), **tx}]
    )
    for _ in range(400):
        receipt: dict[str, Any] | None = await rpc.call("eth_getTransactionReceipt", [tx_hash])
        if receipt:
            if quantity(receipt["status"]) != 1:
                raise RuntimeError(f"DEX set-up transaction {tx_hash} reverted")
            return receipt
        await asyncio.sleep(0.05)  # anvil mines it at once; polling its receipt
    raise RuntimeError(f"DEX set-up transaction {tx_hash} was not mined within 20 s")


def swaps_in(receipt: dict[str, Any]) -> list[tuple[int, int, int, int]]:
    """(amount0In, amount1In, amount0Out, amount1Out) of each pair `Swap` log of a receipt."""
    found = []
    for log in receipt.get("logs") or []:
        if log["topics"] and log["topics"][0] == SWAP_TOPIC:
            in0, in1, out0, out1 = decode(["uint256"] * 4, bytes.fromhex(hex_data(log["data"])[2:]))
            found.append((int(in0), int(in1), int(out0), int(out1)))
    return found
