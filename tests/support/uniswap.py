"""A real Uniswap V2 on anvil for the DCA tests: `chainflow.cli.dex` (the code `chainflow dev
--demo-dca` deploys with), from this checkout's `.cache/uniswap-v2`, deployed by anvil's
account 0."""

from pathlib import Path

from chainflow.cli.dex import E18, SWAP_TOPIC, Dex, build_root, swaps_in
from chainflow.cli.dex import deploy_dex as _deploy_dex
from chainflow.infra.rpc.client import RpcClient

__all__ = ["DEPLOYER", "E18", "SWAP_TOPIC", "Dex", "deploy_dex", "swaps_in"]

ROOT = Path(__file__).resolve().parents[2] / build_root()
DEPLOYER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # anvil's unlocked account 0


async def deploy_dex(rpc: RpcClient) -> Dex:
    """The DEX and its pools (fails with the install command when the build files are
    missing: scripts/bootstrap installs them, as it installs anvil)."""
    return await _deploy_dex(rpc, deployer=DEPLOYER, root=ROOT)
