"""`chainflow worker`: run the engine loops for some or all chains until SIGTERM."""

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from chainflow.cli.runtime import check_keys_at_start, database_answers, run, settings_for_cli
from chainflow.core.errors import InvalidInput

if TYPE_CHECKING:
    from chainflow.core.settings import Settings
    from chainflow.infra.queue import JobQueue

DEFAULT_METRICS_PORT = 9464  # DESIGN §13
# A worker whose engine could not open (the database went away after the start checks) waits
# this long, then for the database, before it opens it again.
_REOPEN_S = 1.0


_CHAINS_USAGE = "--chains must be comma-separated chain ids (positive, below 2**53), e.g. 1,137"


def parse_chain_ids(text: str | None) -> list[int] | None:
    """'1,137' → [1, 137]. Raises: InvalidInput (not echoing the text)."""
    from chainflow.core.fields import MAX_CHAIN_ID
    from chainflow.core.numerals import ascii_int

    if text is None:
        return None
    # ASCII digits only: int() would take "٣" or "1_0" as a chain id.
    ids = [ascii_int(part.strip(), max_digits=16) for part in text.split(",") if part.strip()]
    chain_ids = [i for i in ids if i is not None and 0 < i < MAX_CHAIN_ID]
    if not ids or len(chain_ids) < len(ids):
        raise InvalidInput(_CHAINS_USAGE)
    return chain_ids


def worker(
    chains: Annotated[
        str | None, typer.Option(help="only these chain ids, comma-separated, e.g. 1,137")
    ] = None,
    metrics_port: Annotated[
        int,
        typer.Option(
            help="serve GET /metrics on this port (on CHAINFLOW_API_HOST); 0 turns it off",
            min=0,
            max=65535,
        ),
    ] = DEFAULT_METRICS_PORT,
) -> None:
    """Drain lanes and track chains (distributed shape: run as many as you like)."""
    from chainflow.infra.datadir import hold_data_dir
    from chainflow.infra.signing.master_source import load_master_key

    chain_ids = parse_chain_ids(chains)
    settings = settings_for_cli()
    with hold_data_dir(settings, exclusive=False):
        master = load_master_key(settings, allow_generate=settings.is_embedded)
        if not database_answers(settings):
            return  # stopped (SIGTERM, Ctrl-C) while it waited for the database
        check_keys_at_start(settings, master)
        with serve_metrics(settings, metrics_port):
            run(lambda: _work(settings, chain_ids))


@contextmanager
def serve_metrics(settings: "Settings", port: int) -> Iterator[None]:
    """This process's metrics over HTTP on `port` (a thread of prometheus_client; 0: none).

    A port that cannot be bound (another worker on this host has it) is logged as an error
    naming the port and the flag, and the worker runs on without metrics: metrics must not
    stop transactions, and Prometheus shows the target down (README "Operating Chainflow").
    """
    from prometheus_client import start_http_server

    from chainflow.core.logging import get_logger

    log = get_logger(__name__)
    if port == 0 or not settings.metrics_enabled:
        yield
        return
    try:
        server, thread = start_http_server(port, addr=settings.api_host)
    except OSError as exc:
        log.error(
            "metrics.unavailable",
            host=settings.api_host,
            port=port,
            flag="--metrics-port",
            error=str(exc),
            running="without metrics",
        )
        yield
        return
    log.info("metrics.serving", host=settings.api_host, port=port)
    try:
        yield
    finally:
        server.shutdown()  # ends serve_forever; the listening socket stays open until:
        server.server_close()
        thread.join(timeout=5)


async def _work(settings: "Settings", chain_ids: list[int] | None) -> None:
    from chainflow.cli.runtime import wait_for_database
    from chainflow.core.logging import get_logger
    from chainflow.infra.queue import RedisJobQueue

    log = get_logger(__name__)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    doorbells = RedisJobQueue(settings.redis_url) if settings.redis_url else None
    try:
        # The database may go away between the start checks and the engine's first reads
        # (a restart): the worker waits for it again rather than exit.
        while (error := await _run_engine(settings, chain_ids, stop, doorbells)) is not None:
            log.warning("worker.start_failed", error=error, retry_in_s=_REOPEN_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=_REOPEN_S)
            if stop.is_set() or not await wait_for_database(settings, stop):
                break
    finally:
        if doorbells is not None:
            await doorbells.close()
    log.info("worker.stopped")


async def _run_engine(
    settings: "Settings",
    chain_ids: list[int] | None,
    stop: asyncio.Event,
    doorbells: "JobQueue | None",
) -> str | None:
    """Open the engine and run it until `stop`: None; what failed if the database could not
    be reached while it opened."""
    from sqlalchemy.exc import DBAPIError

    from chainflow.core.logging import get_logger
    from chainflow.infra.queue.roster import RedisRoster
    from chainflow.infra.queue.signals import RedisSignals
    from chainflow.workers.context import open_engine
    from chainflow.workers.main import run_engine

    opened = False
    signals = None
    roster = None
    try:
        async with open_engine(settings, chain_ids=chain_ids) as engine:
            opened = True
            if settings.redis_url:
                signals = RedisSignals(settings.redis_url, sender=engine.ports.owner)
                roster = RedisRoster(settings.redis_url, owner=engine.ports.owner)
            get_logger(__name__).info("worker.started", chains=sorted(engine.ports.rpc))
            await run_engine(
                engine,
                stop,
                poll_s=settings.worker_poll_s,
                idle_poll_s=settings.worker_idle_poll_s,
                queue=doorbells,
                signals=signals,
                roster=roster,
            )
    except (OSError, DBAPIError) as exc:
        if opened:
            raise
        return f"cannot reach the database: {type(exc).__name__}"
    finally:
        if signals is not None:
            await signals.close()
        if roster is not None:
            await roster.close()
    return None
