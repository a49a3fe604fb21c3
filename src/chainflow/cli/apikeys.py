"""`chainflow apikey`: create (the key alone on the last line), list and revoke API keys."""

import uuid
from typing import Annotated

import typer

from chainflow.cli.options import text_option
from chainflow.cli.runtime import open_database, run, settings_for_cli
from chainflow.domain.apikeys import service
from chainflow.domain.apikeys.models import ApiKey
from chainflow.domain.apikeys.service import ApiKeyNotFound
from chainflow.infra.db.uow import unit_of_work

app = typer.Typer(no_args_is_help=True, help="API keys.")


@app.command("create")
def create(
    scopes: Annotated[
        list[str],
        typer.Option(
            "--scopes", help="admin, wallets, transactions:write, schedules or read; repeatable"
        ),
    ],
    name: Annotated[
        str | None, typer.Option(help="a label for the key", callback=text_option)
    ] = None,
) -> None:
    """Create an API key; it is printed once, alone on the last line, and stored hashed."""
    settings = settings_for_cli()
    service.parse_scopes(scopes)

    async def create() -> tuple[str, str, list[str]]:
        async with open_database(settings) as sessionmaker, unit_of_work(sessionmaker) as session:
            row, token = await service.create_api_key(session, scopes, name=name)
            return str(row.id), token, row.scopes

    key_id, token, granted = run(create)
    typer.echo(f"created API key {key_id} with scopes {', '.join(granted)}; it is shown once:")
    typer.echo(token)


@app.command("list")
def list_() -> None:
    """List API keys: id, prefix, scopes, created, revoked, name (never a secret or hash)."""
    settings = settings_for_cli()

    async def rows() -> list[str]:
        async with open_database(settings) as sessionmaker, unit_of_work(sessionmaker) as session:
            return [_line(key) for key in await service.list_api_keys(session)]

    for line in run(rows):
        typer.echo(line)


def _line(key: ApiKey) -> str:
    revoked = f"revoked={key.revoked_at.isoformat()}" if key.revoked_at else "active"
    # The prefix is the public part of the token (`cf_<prefix>_<secret>`): it tells a holder
    # which key they hold, and authenticates nothing.
    return (
        f"{key.id}  cf_{key.prefix}_…  {','.join(key.scopes)}  "
        f"created={key.created_at.isoformat()}  {revoked}  {key.name or ''}"
    ).rstrip()


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id (`chainflow apikey list`)")],
) -> None:
    """Revoke a key. Safe to repeat; each API process refuses it once its cache expires."""
    parsed = _parse_id(key_id)
    settings = settings_for_cli()

    async def revoke() -> tuple[ApiKey, bool]:
        async with open_database(settings) as sessionmaker, unit_of_work(sessionmaker) as session:
            return await service.revoke_api_key(session, parsed)

    key, newly = run(revoke)
    if not newly:
        assert key.revoked_at is not None  # noqa: S101 - not newly revoked means revoked before
        typer.echo(f"API key {key.id} was already revoked at {key.revoked_at.isoformat()}")
        return
    typer.echo(
        f"revoked API key {key.id}; every API process refuses it within "
        f"{settings.api_key_cache_s:g} s (CHAINFLOW_API_KEY_CACHE_S)"
    )


def _parse_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        # Not echoed: whatever was pasted here (perhaps the key itself) stays off the terminal.
        raise ApiKeyNotFound(
            "no API key has that id (ids are UUIDs: `chainflow apikey list`)"
        ) from None
