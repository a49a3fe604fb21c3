"""The embedded shape in one process (SQLite, in-process queue, optional anvil): what
`chainflow dev` (cli/dev.py) runs once its options are parsed."""

import asyncio
import contextlib
import socket
from contextlib import AsyncExitStack
from dataclasses import dataclass

import aiohttp
import typer

from chainflow.api.server import bind
from chainflow.cli.demo import run_demo
from chainflow.cli.demo_dca import run_dca_demo
from chainflow.cli.dex import check_build_files
from chainflow.cli.runtime import check_keys_at_start, migrate, open_database, run, settings_for_cli
from chainflow.core.errors import ConfigError, Unavailable
from chainflow.core.logging import get_logger
from chainflow.core.settings import Settings
from chainflow.domain.apikeys.service import create_api_key
from chainflow.domain.chains import service as chains
from chainflow.domain.chains.probe import rpc_chain_id_probe
from chainflow.domain.chains.schemas import ChainSeed, ChainUpdate
from chainflow.domain.chains.seed import load_seed
from chainflow.domain.master_key import foreign_key_ids
from chainflow.domain.wallets import service as wallets
from chainflow.domain.wallets.errors import WalletExists
from chainflow.infra.anvil import DEV_PRIVATE_KEY_HEX, run_anvil
from chainflow.infra.datadir import hold_data_dir
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.net.urlguard import UrlGuard
from chainflow.infra.queue import InProcessJobQueue
from chainflow.infra.rpc.client import new_http_session
from chainflow.infra.signing.keystore import MasterKey, validate_private_key
from chainflow.infra.signing.local import address_of
from chainflow.infra.signing.master_source import load_master_key
from chainflow.workers.context import open_engine
from chainflow.workers.main import run_engine

ANVIL_CHAIN_ID = 31337
DCA_DEMO_INTERVAL_S = 3
log = get_logger(__name__)


def run_embedded(
    host: str | None, port: int | None, *, anvil_port: int | None, demo: int, demo_dca: bool
) -> None:
    """Serve the API and run the workers in this process until SIGTERM; with `anvil_port`,
    start anvil there first, submit `demo` requests to it over the API and, with `demo_dca`,
    run a DCA schedule on a Uniswap V2 deployed there."""
    settings = _dev_settings(settings_for_cli(), demo_dca=demo_dca)
    if demo_dca:
        if anvil_port is None:
            raise ConfigError("--demo-dca needs --anvil (it deploys Uniswap V2 on the dev anvil)")
        check_build_files()  # one line naming the install command, before anything starts
    seeds = load_seed(settings.chains_file)
    bind_host = host or settings.api_host
    with hold_data_dir(settings, exclusive=False):
        sock = bind(bind_host, settings.api_port if port is None else port)
        bind_port = sock.getsockname()[1]  # the one the OS picked for --port 0
        if settings.webhook_allow_private_urls:  # said once the service can start, not before
            log.warning(  # a refusal of its arguments, which must stay one line
                "webhooks.private_urls_allowed",
                detail="webhook URLs on loopback and private hosts are allowed (development only)",
            )
        master = load_master_key(settings, allow_generate=True)
        migrate(settings)
        check_keys_at_start(settings, master)
        run(
            lambda: _serve(
                settings,
                master,
                sock,
                seeds=seeds,
                api_url=f"http://{bind_host}:{bind_port}",
                anvil_port=anvil_port,
                demos=Demos(count=demo if anvil_port is not None else 0, dca=demo_dca),
            )
        )


def _dev_settings(settings: Settings, *, demo_dca: bool = False) -> Settings:
    """Embedded: no Redis; RPC URLs on private hosts allowed unless the environment says no
    (the dev chain is an anvil on loopback). The DCA demo runs every DCA_DEMO_INTERVAL_S,
    below the default floor of intervals, unless the environment sets the floor."""
    update: dict[str, object] = {"redis_url": None}
    if demo_dca and "schedule_min_interval_s" not in settings.model_fields_set:
        update["schedule_min_interval_s"] = DCA_DEMO_INTERVAL_S
    if "rpc_allow_private_urls" not in settings.model_fields_set:
        update["rpc_allow_private_urls"] = True
    # Webhook receivers under development listen on localhost (issue 16).
    if "webhook_allow_private_urls" not in settings.model_fields_set:
        update["webhook_allow_private_urls"] = True
    return settings.model_copy(update=update)


async def _serve(
    settings: Settings,
    master: MasterKey,
    sock: socket.socket,
    *,
    seeds: list[ChainSeed],
    api_url: str,
    anvil_port: int | None,
    demos: "Demos",
) -> None:
    async with AsyncExitStack() as stack:
        anvil_url = None
        if anvil_port is not None:
            state_file = settings.data_dir / "anvil-state.json"
            anvil_url = await stack.enter_async_context(
                run_anvil(port=anvil_port, state_file=state_file)
            )
            log.info("anvil.started", url=anvil_url, chain_id=ANVIL_CHAIN_ID)
        dev_wallet = await _prepare(settings, master, seeds, anvil_url=anvil_url)
        from chainflow.api.app import create_app
        from chainflow.api.server import serve

        engine = await stack.enter_async_context(open_engine(settings))
        stop = asyncio.Event()
        doorbells = InProcessJobQueue()
        workers = asyncio.create_task(
            run_engine(
                engine,
                stop,
                poll_s=settings.worker_poll_s,
                idle_poll_s=settings.worker_idle_poll_s,
                queue=doorbells,
            )
        )
        try:
            app = create_app(settings, queue=doorbells)
            server = asyncio.create_task(serve(app, sock, settings))
            demo = None
            if demos.wanted and anvil_url and dev_wallet:
                demo = asyncio.create_task(
                    _run_demos(settings, api_url, anvil_url, wallet=dev_wallet, demos=demos)
                )
            await server
            if demo is not None:  # the service stopped (SIGTERM, Ctrl-C): so does its client
                demo.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await demo
        finally:
            stop.set()
            await workers


async def _prepare(
    settings: Settings, master: MasterKey, seeds: list[ChainSeed], *, anvil_url: str | None
) -> str | None:
    """Seed chains; with anvil, point chain 31337 at it and import the funded dev wallet."""
    async with open_database(settings) as sessionmaker, unit_of_work(sessionmaker) as session:
        await chains.seed_chains(session, seeds)
        if anvil_url is None:
            return None
        guard = UrlGuard(allow_private=settings.rpc_allow_private_urls)
        async with new_http_session(guard=guard) as http:
            probe = rpc_chain_id_probe(http, timeout_s=settings.rpc_timeout_s, guard=guard)
            update = ChainUpdate(rpc_urls=[anvil_url], enabled=True)
            await chains.update_chain(session, ANVIL_CHAIN_ID, update, probe=probe)
        try:
            async with session.begin_nested():
                wallet = await wallets.import_wallet(
                    session,
                    validate_private_key(DEV_PRIVATE_KEY_HEX),
                    master=master,
                    label="anvil dev wallet",
                    chain_ids=[ANVIL_CHAIN_ID],
                    sealed_rows=foreign_key_ids,
                )
            log.info("wallet.imported", wallet_id=str(wallet.id), address=wallet.address)
        except WalletExists:
            pass  # imported by an earlier run
        return str(address_of(validate_private_key(DEV_PRIVATE_KEY_HEX)))


@dataclass(frozen=True)
class Demos:
    count: int = 0  # --demo N: a burst of transfers and calls
    dca: bool = False  # --demo-dca: a DCA schedule on a Uniswap V2 deployed on the anvil

    @property
    def wanted(self) -> bool:
        return bool(self.count or self.dca)


async def _run_demos(
    settings: Settings, api_url: str, anvil_url: str, *, wallet: str, demos: Demos
) -> None:
    """The demos, one after the other, as clients of the running service: a failure of theirs
    is printed, and the service keeps running."""
    try:
        async with open_database(settings) as sessionmaker, unit_of_work(sessionmaker) as session:
            _, token = await create_api_key(session, ["admin"], name="dev demo")
        typer.echo(f"demo API key (admin, this dev database only): {token}", err=True)
        await _wait_healthy(api_url)
        if demos.count:
            await run_demo(
                api_url=api_url, token=token, anvil_url=anvil_url, wallet=wallet, count=demos.count
            )
        if demos.dca:
            await run_dca_demo(
                api_url=api_url,
                token=token,
                anvil_url=anvil_url,
                wallet=wallet,
                interval_s=max(DCA_DEMO_INTERVAL_S, settings.schedule_min_interval_s),
            )
    except Exception as exc:  # the demo is a client of the service: its failure is not ours
        log.error("demo.failed", error=str(exc)[:300])
        typer.echo(f"demo failed: {str(exc)[:300]}; the service keeps running", err=True)


async def _wait_healthy(api_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(f"{api_url}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)  # the server task is still binding its socket
    raise Unavailable(f"the API did not answer on {api_url}")
