"""Typer application: every command, each exiting 0 on success or 1 with one error line."""

import sys
from typing import Annotated

import typer
from typer._click.exceptions import NoArgsIsHelpError  # typer vendors click: no public name

from chainflow.cli import keys, wallets
from chainflow.cli.dev import dev
from chainflow.cli.runtime import (
    check_keys_at_start,
    echo_err,
    open_database,
    run,
    settings_for_cli,
)
from chainflow.cli.worker import worker
from chainflow.core.errors import ChainflowError
from chainflow.core.redaction import scrub_text
from chainflow.domain.apikeys import service as apikeys
from chainflow.domain.chains import service as chains
from chainflow.infra.datadir import hold_data_dir, secure_data_dir
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.master_source import load_master_key
from chainflow.migrations.runner import upgrade

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Chainflow: nonce-safe, crash-safe transaction execution for EVM wallets.",
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
apikey_app = typer.Typer(no_args_is_help=True, help="API keys.")
app.add_typer(db_app, name="db")
app.add_typer(apikey_app, name="apikey")
app.add_typer(wallets.app, name="wallet")
app.add_typer(keys.app, name="keys")
app.command()(dev)
app.command()(worker)


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="bind port")] = None,
) -> None:
    """Serve the REST API (distributed shape: run as many as you like)."""
    settings = settings_for_cli()
    with hold_data_dir(settings, exclusive=False):
        master = load_master_key(settings, allow_generate=settings.is_embedded)
        check_keys_at_start(settings, master)
        from chainflow.api.app import create_app
        from chainflow.api.server import serve

        app_ = create_app(settings)
        run(lambda: serve(app_, host=host or settings.api_host, port=port or settings.api_port))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to this version's schema and seed missing chains."""
    settings = settings_for_cli()
    secure_data_dir(settings)
    upgrade(settings.resolved_database_url)
    seeds = chains.load_seed(settings.chains_file)

    async def seed() -> int:
        async with open_database(settings) as sessionmaker, unit_of_work(sessionmaker) as session:
            return await chains.seed_chains(session, seeds)

    added = run(seed)
    typer.echo(f"database at head; {added} chain(s) seeded")


@apikey_app.command("create")
def apikey_create(
    scopes: Annotated[
        list[str],
        typer.Option("--scopes", help="admin, wallets, transactions:write or read; repeatable"),
    ],
    name: Annotated[str | None, typer.Option(help="a label for the key")] = None,
) -> None:
    """Create an API key; it is printed once, alone on the last line, and stored hashed."""
    settings = settings_for_cli()
    apikeys.parse_scopes(scopes)

    async def create() -> tuple[str, str, list[str]]:
        async with open_database(settings) as sessionmaker, unit_of_work(sessionmaker) as session:
            row, token = await apikeys.create_api_key(session, scopes, name=name)
            return str(row.id), token, row.scopes

    key_id, token, granted = run(create)
    typer.echo(f"created API key {key_id} with scopes {', '.join(granted)}; it is shown once:")
    typer.echo(token)


def main() -> None:
    """Entry point: errors, usage errors included, become one line on stderr and a non-zero
    exit code. The line never quotes a private key: click's usage errors repeat the argument
    they refuse, and `chainflow wallet import 0x<key>` is an easy mistake."""
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # usage errors: bad option, extra argument, …
        echo_err(scrub_text(f"error: {exc.format_message()}{_help_hint(exc)}"))
        sys.exit(exc.exit_code)
    except typer.Abort:
        echo_err("error: aborted")
        sys.exit(1)
    except ChainflowError as exc:
        echo_err(scrub_text(f"error: {exc.detail}"))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def _help_hint(exc: typer.TyperException) -> str:
    context = getattr(exc, "ctx", None)
    return f" (see `{context.command_path} --help`)" if context is not None else ""
