"""`chainflow keys`: generate and rotate the master key."""

import base64
from pathlib import Path
from typing import Annotated

import typer

from chainflow.cli.runtime import run, settings_for_cli

app = typer.Typer(no_args_is_help=True, help="Master key.")


@app.command("generate-master")
def generate_master() -> None:
    """Print a new random master key (base64 of 32 bytes) for CHAINFLOW_MASTER_KEY."""
    from chainflow.infra.signing.keystore import MasterKey

    typer.echo(base64.b64encode(MasterKey.generate().secret.reveal()).decode())


@app.command("rotate-master")
def rotate_master(
    new_key_file: Annotated[
        Path | None,
        typer.Option(help="file holding the new key (base64); default: stdin (key file only)"),
    ] = None,
) -> None:
    """Re-wrap every wallet's data key under a new master key; refused while any process
    using the keys runs. Safe to run again after any interruption: rows already under the
    new key are skipped."""
    from chainflow.cli.rotation import read_new_key, rotate
    from chainflow.core.crashpoints import Crasher
    from chainflow.infra.datadir import hold_data_dir
    from chainflow.infra.signing.master_source import (
        MASTER_KEY_FILE,
        PREVIOUS_KEY_FILE,
        load_master_key,
        uses_key_file,
    )

    settings = settings_for_cli()
    new = read_new_key(settings, new_key_file)
    crasher = Crasher.from_spec(settings.test_crash_at)
    with hold_data_dir(settings, exclusive=True):
        keys = load_master_key(settings, allow_generate=False)
        count = run(lambda: rotate(settings, keys, new, crasher))
    if uses_key_file(settings):
        folder = settings.data_dir
        where = (
            f"{folder / MASTER_KEY_FILE} holds it; the old key is kept in "
            f"{folder / PREVIOUS_KEY_FILE} (delete it once the new key is backed up)"
        )
    else:
        where = "now start every process with CHAINFLOW_MASTER_KEY set to the new key"
    typer.echo(
        f"re-wrapped {count} wallet key(s) and webhook secret(s) under master key "
        f"{new.key_id}; {where}"
    )
