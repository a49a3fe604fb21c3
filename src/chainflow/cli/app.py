"""Typer application: every command, each exiting 0 on success or 1 with one error line."""

import typer

from chainflow.cli import apikeys, keys, schedules, wallets
from chainflow.cli.dev import dev
from chainflow.cli.failures import run_app
from chainflow.cli.options import HostOpt, PortOpt
from chainflow.cli.runtime import (
    check_keys_at_start,
    database_answers,
    migrate,
    open_database,
    run,
    settings_for_cli,
)
from chainflow.cli.worker import worker

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Chainflow: nonce-safe, crash-safe transaction execution for EVM wallets.",
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(db_app, name="db")
app.add_typer(apikeys.app, name="apikey")
app.add_typer(wallets.app, name="wallet")
app.add_typer(keys.app, name="keys")
app.add_typer(schedules.app, name="schedule")
app.command()(dev)
app.command()(worker)


@app.command()
def api(host: HostOpt = None, port: PortOpt = None) -> None:
    """Serve the REST API (distributed shape: run as many as you like)."""
    from chainflow.infra.datadir import hold_data_dir
    from chainflow.infra.signing.master_source import load_master_key

    settings = settings_for_cli()
    with hold_data_dir(settings, exclusive=False):
        master = load_master_key(settings, allow_generate=settings.is_embedded)
        if not database_answers(settings):
            return  # stopped (SIGTERM, Ctrl-C) while it waited for the database
        check_keys_at_start(settings, master)
        from chainflow.api.app import create_app
        from chainflow.api.server import bind, serve

        sock = bind(host or settings.api_host, settings.api_port if port is None else port)
        app_ = create_app(settings)
        run(lambda: serve(app_, sock, settings))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to this version's schema and seed missing chains."""
    from chainflow.domain.chains import service as chains
    from chainflow.domain.chains.seed import load_seed
    from chainflow.infra.datadir import secure_data_dir
    from chainflow.infra.db.uow import unit_of_work

    settings = settings_for_cli()
    seeds = load_seed(settings.chains_file)  # a bad seed file stops us before any migration
    secure_data_dir(settings)
    migrate(settings)

    async def seed() -> int:
        async with open_database(settings) as sessionmaker, unit_of_work(sessionmaker) as session:
            return await chains.seed_chains(session, seeds)

    added = run(seed)
    typer.echo(f"database at head; {added} chain(s) seeded")


def main() -> None:
    """Entry point: every failure is one line on stderr (cli/failures.py)."""
    run_app(app)
