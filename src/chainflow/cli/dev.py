"""`chainflow dev`: the embedded shape in one process (SQLite, in-process queue, optional anvil)."""

from typing import Annotated

import typer

from chainflow.cli.options import HostOpt, PortOpt

ANVIL_PORT = 8545


def dev(
    host: HostOpt = None,
    port: PortOpt = None,
    anvil: Annotated[
        bool, typer.Option("--anvil", help="also start a local anvil chain and a funded wallet")
    ] = False,
    anvil_port: Annotated[
        int, typer.Option(help="port of the local anvil (0: a free one)", min=0, max=65535)
    ] = ANVIL_PORT,
    demo: Annotated[
        int, typer.Option(help="with --anvil: submit this many demo requests over the API", min=0)
    ] = 0,
    demo_dca: Annotated[
        bool,
        typer.Option(
            "--demo-dca",
            help="with --anvil: deploy Uniswap V2 from .cache/uniswap-v2 and run a DCA schedule",
        ),
    ] = False,
) -> None:
    """Run everything in one process on the embedded database (the README's first command)."""
    from chainflow.cli.embedded import run_embedded

    run_embedded(host, port, anvil_port=anvil_port if anvil else None, demo=demo, demo_dca=demo_dca)
