"""`chainflow wallet`: import, generate and list wallets."""

from pathlib import Path
from typing import Annotated

import typer

from chainflow.cli.options import chain_ids_option, text_option
from chainflow.cli.runtime import open_database, run, settings_for_cli
from chainflow.cli.secrets import read_secret
from chainflow.core.types import SecretBytes
from chainflow.domain.wallets import service
from chainflow.domain.wallets.custody import check_master_key
from chainflow.infra.datadir import hold_data_dir
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import MasterKey, validate_private_key
from chainflow.infra.signing.local import generate_private_key
from chainflow.infra.signing.master_source import load_master_key

app = typer.Typer(no_args_is_help=True, help="Wallets.")

LabelOpt = Annotated[str | None, typer.Option(help="a label for the wallet", callback=text_option)]
ChainsOpt = Annotated[
    list[int] | None,
    typer.Option("--chain-id", help="enable on this chain; repeatable", callback=chain_ids_option),
]


def _store(private_key: SecretBytes, label: str | None, chain_ids: list[int] | None) -> None:
    settings = settings_for_cli()

    async def store(master: MasterKey) -> tuple[str, str]:
        async with open_database(settings) as sessionmaker, unit_of_work(sessionmaker) as session:
            await check_master_key(session, master=master)
            wallet = await service.import_wallet(
                session, private_key, master=master, label=label, chain_ids=chain_ids or []
            )
            return str(wallet.id), wallet.address

    # Held while sealing: a rotation cannot start meanwhile, nor this run during one.
    with hold_data_dir(settings, exclusive=False):
        master = load_master_key(settings, allow_generate=settings.is_embedded)
        wallet_id, address = run(lambda: store(master))
    typer.echo(f"wallet {wallet_id} {address}")


@app.command("import")
def import_(
    file: Annotated[
        Path | None, typer.Option(help="file holding the private key; default: stdin")
    ] = None,
    label: LabelOpt = None,
    chain_ids: ChainsOpt = None,
) -> None:
    """Import a private key read from --file or stdin (never from an argument)."""
    private_key = validate_private_key(read_secret(file, what="private key"))
    _store(private_key, label, chain_ids)


@app.command("generate")
def generate(label: LabelOpt = None, chain_ids: ChainsOpt = None) -> None:
    """Generate a new key server-side; only its address is printed."""
    _store(generate_private_key(), label, chain_ids)


@app.command("list")
def list_() -> None:
    """List wallets: id, address, status, chains, label."""
    settings = settings_for_cli()

    async def rows() -> list[str]:
        async with open_database(settings) as sessionmaker, unit_of_work(sessionmaker) as session:
            wallets, _ = await service.list_wallets(session, limit=10_000, cursor=None)
            return [
                f"{w.id}  {w.address}  {w.status}  "
                f"chains={','.join(str(c.chain_id) for c in w.chains if c.enabled) or '-'}  "
                f"{w.label or ''}".rstrip()
                for w in wallets
            ]

    for line in run(rows):
        typer.echo(line)
