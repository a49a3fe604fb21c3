"""`chainflow apikey`: create (the key alone on the last line), list and revoke API keys."""

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from chainflow.cli.options import chain_ids_option, duration_option, rate_option, text_option
from chainflow.cli.runtime import open_database, run, settings_for_cli
from chainflow.core.clock import utcnow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from chainflow.domain.apikeys.models import ApiKey
    from chainflow.domain.apikeys.service import KeyLimits

app = typer.Typer(no_args_is_help=True, help="API keys.")


@app.command("create")
def create(
    scopes: Annotated[
        list[str],
        typer.Option(
            "--scopes",
            help="admin, wallets, transactions:write, webhooks, schedules, policies or read; "
            "repeatable",
        ),
    ],
    name: Annotated[
        str | None, typer.Option(help="a label for the key", callback=text_option)
    ] = None,
    wallets: Annotated[
        list[str] | None,
        typer.Option("--wallet", help="limit the key to this wallet id; repeatable"),
    ] = None,
    chain_ids: Annotated[
        list[int] | None,
        typer.Option(
            "--chain-id", help="limit the key to this chain; repeatable", callback=chain_ids_option
        ),
    ] = None,
    expires_in: Annotated[
        str | None,
        typer.Option(help="e.g. 30d, 12h, 90m, 3600s", callback=duration_option),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option(
            help="requests per second, reads and writes each, e.g. 50/s", callback=rate_option
        ),
    ] = None,
) -> None:
    """Create an API key; it is printed once, alone on the last line, and stored hashed.
    With --wallet / --chain-id it reaches only those wallets and chains (403 elsewhere)."""
    from chainflow.domain.apikeys import service
    from chainflow.domain.audit import service as audit
    from chainflow.infra.db.uow import unit_of_work

    settings = settings_for_cli()
    service.parse_scopes(scopes)
    limits = service.KeyLimits(
        wallet_ids=[_parse_wallet_id(w) for w in wallets or []],
        chain_ids=chain_ids or [],
        expires_at=utcnow() + timedelta(seconds=int(expires_in)) if expires_in else None,
        rate_per_s=float(rate) if rate else None,
    )

    async def create() -> tuple[str, str, list[str]]:
        async with open_database(settings) as sessionmaker, unit_of_work(sessionmaker) as session:
            await _check_targets_exist(session, limits)
            row, token = await service.create_api_key(session, scopes, name=name, limits=limits)
            audit.record(
                session, audit.CLI, "api_key.created", resource="api_key", resource_id=row.id
            )
            return str(row.id), token, row.scopes

    key_id, token, granted = run(create)
    typer.echo(f"created API key {key_id} with scopes {', '.join(granted)}; it is shown once:")
    typer.echo(token)


@app.command("list")
def list_() -> None:
    """List API keys: id, prefix, scopes, created, revoked, name (never a secret or hash)."""
    from chainflow.domain.apikeys import service
    from chainflow.infra.db.uow import unit_of_work

    settings = settings_for_cli()

    async def rows() -> list[str]:
        async with open_database(settings) as sessionmaker, unit_of_work(sessionmaker) as session:
            return [_line(key) for key in await service.list_api_keys(session)]

    for line in run(rows):
        typer.echo(line)


def _line(key: "ApiKey") -> str:
    revoked = f"revoked={key.revoked_at.isoformat()}" if key.revoked_at else "active"
    limits = [
        f"wallets={','.join(key.wallet_ids)}" if key.wallet_ids else "",
        f"chains={','.join(str(c) for c in key.chain_ids)}" if key.chain_ids else "",
        f"expires={key.expires_at.isoformat()}" if key.expires_at else "",
        f"rate={key.write_rate_per_s:g}/s" if key.write_rate_per_s is not None else "",
    ]
    # The prefix is the public part of the token (`cf_<prefix>_<secret>`): it tells a holder
    # which key they hold, and authenticates nothing.
    return "  ".join(
        part
        for part in (
            str(key.id),
            f"cf_{key.prefix}_…",
            ",".join(key.scopes),
            f"created={key.created_at.isoformat()}",
            revoked,
            *limits,
            key.name or "",
        )
        if part
    )


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id (`chainflow apikey list`)")],
) -> None:
    """Revoke a key. Safe to repeat; each API process refuses it once its cache expires."""
    from chainflow.domain.apikeys import service
    from chainflow.domain.audit import service as audit
    from chainflow.infra.db.uow import unit_of_work

    parsed = _parse_id(key_id)
    settings = settings_for_cli()

    async def revoke() -> "tuple[ApiKey, bool]":
        async with open_database(settings) as sessionmaker, unit_of_work(sessionmaker) as session:
            key, newly = await service.revoke_api_key(session, parsed)
            if newly:
                audit.record(
                    session, audit.CLI, "api_key.revoked", resource="api_key", resource_id=key.id
                )
            return key, newly

    key, newly = run(revoke)
    if not newly:
        assert key.revoked_at is not None  # noqa: S101 - not newly revoked means revoked before
        typer.echo(f"API key {key.id} was already revoked at {key.revoked_at.isoformat()}")
        return
    typer.echo(
        f"revoked API key {key.id}; every API process refuses it within "
        f"{settings.api_key_cache_s:g} s (CHAINFLOW_API_KEY_CACHE_S)"
    )


async def _check_targets_exist(session: "AsyncSession", limits: "KeyLimits") -> None:
    """Raises: WalletNotFound, ChainNotFound, before anything is stored."""
    from chainflow.domain.chains import service as chains
    from chainflow.domain.wallets import service as wallets

    for wallet_id in limits.wallet_ids:
        await wallets.get_wallet(session, wallet_id, lanes=False)
    for chain_id in limits.chain_ids:
        await chains.get_chain(session, chain_id)


def _parse_wallet_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise typer.BadParameter(
            "--wallet takes a wallet id (a UUID: `chainflow wallet list`)"
        ) from None


def _parse_id(text: str) -> uuid.UUID:
    from chainflow.domain.apikeys.service import ApiKeyNotFound

    try:
        return uuid.UUID(text)
    except ValueError:
        # Not echoed: whatever was pasted here (perhaps the key itself) stays off the terminal.
        raise ApiKeyNotFound(
            "no API key has that id (ids are UUIDs: `chainflow apikey list`)"
        ) from None
