"""`chainflow wallet`: import, generate and list wallets."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from chainflow.cli.options import chain_ids_option, one_line, text_option
from chainflow.cli.runtime import open_database, run, settings_for_cli
from chainflow.cli.secrets import read_secret
from chainflow.core.errors import InvalidInput
from chainflow.domain.wallets.kinds import SignerKind

if TYPE_CHECKING:
    from chainflow.core.types import SecretBytes
    from chainflow.domain.wallets.binding import SignerRequest
    from chainflow.infra.signing.keystore import MasterKey

app = typer.Typer(no_args_is_help=True, help="Wallets.")

LabelOpt = Annotated[str | None, typer.Option(help="a label for the wallet", callback=text_option)]
ChainsOpt = Annotated[
    list[int] | None,
    typer.Option("--chain-id", help="enable on this chain; repeatable", callback=chain_ids_option),
]
SignerOpt = Annotated[
    SignerKind,
    typer.Option("--signer", help="where the key lives: local (sealed here), pkcs11, aws_kms"),
]
KeyLabelOpt = Annotated[
    str | None, typer.Option(help="pkcs11: label of an existing key in the token")
]
KeyIdOpt = Annotated[str | None, typer.Option(help="aws_kms: key id, ARN or alias")]


def _store(
    private_key: "SecretBytes",
    label: str | None,
    chain_ids: list[int] | None,
    *,
    action: str = "wallet.imported",
) -> None:
    from chainflow.domain.audit import service as audit
    from chainflow.domain.master_key import check_master_key, foreign_key_ids
    from chainflow.domain.wallets import service
    from chainflow.infra.datadir import hold_data_dir
    from chainflow.infra.db.uow import unit_of_work
    from chainflow.infra.signing.master_source import load_master_key

    settings = settings_for_cli()

    async def store(master: "MasterKey") -> tuple[str, str]:
        async with open_database(settings) as sessionmaker, unit_of_work(sessionmaker) as session:
            await check_master_key(session, master=master)
            wallet = await service.import_wallet(
                session,
                private_key,
                master=master,
                label=label,
                chain_ids=chain_ids or [],
                sealed_rows=foreign_key_ids,
            )
            audit.record(session, audit.CLI, action, resource="wallet", resource_id=wallet.id)
            return str(wallet.id), wallet.address

    # Held while sealing: a rotation cannot start meanwhile, nor this run during one.
    with hold_data_dir(settings, exclusive=False):
        master = load_master_key(settings, allow_generate=settings.is_embedded)
        wallet_id, address = run(lambda: store(master))
    typer.echo(f"wallet {wallet_id} {address}")


def _bind(request: "SignerRequest", label: str | None, chain_ids: list[int] | None) -> None:
    """Bind a wallet to a key kept by a backend, after its canary signature recovered."""
    from chainflow.domain.audit import service as audit
    from chainflow.domain.wallets import service
    from chainflow.infra.db.uow import unit_of_work
    from chainflow.infra.signing import aws_kms, pkcs11

    settings = settings_for_cli()
    config = pkcs11.config_from(settings)
    token = pkcs11.Pkcs11Token(config) if config else None

    async def bind() -> tuple[str, str]:
        async with open_database(settings) as sessionmaker, unit_of_work(sessionmaker) as session:
            wallet = await service.bind_wallet(
                session,
                request,
                pkcs11=token,
                aws_kms=aws_kms.AwsKms(aws_kms.config_from(settings)),
                label=label,
                chain_ids=chain_ids or [],
            )
            audit.record(
                session, audit.CLI, "wallet.bound", resource="wallet", resource_id=wallet.id
            )
            return str(wallet.id), wallet.address

    try:
        wallet_id, address = run(bind)
    finally:
        if token is not None:
            token.close()
    typer.echo(f"wallet {wallet_id} {address}")


@app.command("import")
def import_(
    file: Annotated[
        Path | None, typer.Option(help="file holding the private key; default: stdin")
    ] = None,
    label: LabelOpt = None,
    chain_ids: ChainsOpt = None,
    signer: SignerOpt = SignerKind.LOCAL,
    key_label: KeyLabelOpt = None,
    key_id: KeyIdOpt = None,
) -> None:
    """Import a private key read from --file or stdin (never from an argument), or bind an
    existing HSM / KMS key (--signer pkcs11 --key-label L, --signer aws_kms --key-id K)."""
    from chainflow.domain.wallets.binding import SignerRequest
    from chainflow.infra.signing.keystore import validate_private_key

    if signer is SignerKind.LOCAL:
        if key_label is not None or key_id is not None:
            raise InvalidInput("--key-label and --key-id need --signer pkcs11 or aws_kms")
        private_key = validate_private_key(read_secret(file, what="private key"))
        _store(private_key, label, chain_ids)
        return
    reference = key_label if signer is SignerKind.PKCS11 else key_id
    if reference is None or file is not None:
        option = "--key-label" if signer is SignerKind.PKCS11 else "--key-id"
        raise InvalidInput(f"--signer {signer} takes {option} (and no key file)")
    _bind(SignerRequest(kind=signer, key_ref=reference), label, chain_ids)


@app.command("generate")
def generate(
    label: LabelOpt = None, chain_ids: ChainsOpt = None, signer: SignerOpt = SignerKind.LOCAL
) -> None:
    """Generate a new key (server-side, inside the HSM with --signer pkcs11, or in AWS KMS
    with --signer aws_kms); only its address is printed."""
    from chainflow.domain.wallets.binding import SignerRequest
    from chainflow.infra.signing.local import generate_private_key

    if signer is SignerKind.LOCAL:
        _store(generate_private_key(), label, chain_ids, action="wallet.generated")
    else:
        _bind(SignerRequest(kind=signer, generate=True), label, chain_ids)


@app.command("list")
def list_() -> None:
    """List wallets: id, address, status, chains, label."""
    from chainflow.domain.wallets import service
    from chainflow.infra.db.uow import unit_of_work

    settings = settings_for_cli()

    async def rows() -> list[str]:
        async with open_database(settings) as sessionmaker, unit_of_work(sessionmaker) as session:
            wallets, _ = await service.list_wallets(session, limit=10_000, cursor=None)
            return [
                f"{w.id}  {w.address}  {w.status}  "
                f"chains={','.join(str(c.chain_id) for c in w.chains if c.enabled) or '-'}  "
                f"{one_line(w.label or '')}".rstrip()
                for w in wallets
            ]

    for line in run(rows):
        typer.echo(line)
