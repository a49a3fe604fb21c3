"""`chainflow keys`: generate and rotate the master key."""

import base64
import os
from pathlib import Path
from typing import Annotated

import typer

from chainflow.cli.runtime import open_database, run, settings_for_cli
from chainflow.cli.secrets import read_secret
from chainflow.domain.wallets.custody import rotate_master_key
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.master_source import MASTER_KEY_FILE, load_master_key

app = typer.Typer(no_args_is_help=True, help="Master key.")


@app.command("generate-master")
def generate_master() -> None:
    """Print a new random master key (base64 of 32 bytes) for CHAINFLOW_MASTER_KEY."""
    typer.echo(base64.b64encode(MasterKey.generate().secret.reveal()).decode())


@app.command("rotate-master")
def rotate_master(
    new_key_file: Annotated[
        Path | None, typer.Option(help="file holding the new key (base64); default: stdin")
    ] = None,
) -> None:
    """Re-wrap every wallet's data key under a new master key, in one transaction.

    Safe to run again: rows already under the new key are skipped.
    """
    settings = settings_for_cli()
    old = load_master_key(settings, allow_generate=False)
    new = MasterKey.from_b64(read_secret(new_key_file, what="new master key"))

    async def rotate() -> int:
        async with open_database(settings) as sessionmaker, unit_of_work(sessionmaker) as session:
            return await rotate_master_key(session, old=old, new=new)

    count = run(rotate)
    if settings.master_key is None:
        _replace_key_file(settings.data_dir / MASTER_KEY_FILE, new)
        where = f"{settings.data_dir / MASTER_KEY_FILE} now holds the new key"
    else:
        where = "now set CHAINFLOW_MASTER_KEY to the new key on every process"
    typer.echo(f"re-wrapped {count} wallet key(s) under master key {new.key_id}; {where}")


def _replace_key_file(path: Path, key: MasterKey) -> None:
    temporary = path.with_suffix(".new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(key.secret.reveal()).decode() + "\n")
    os.replace(temporary, path)
