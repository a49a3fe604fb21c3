"""`chainflow worker`: run the engine loops for some or all chains until SIGTERM."""

import asyncio
import signal
from typing import Annotated

import typer

from chainflow.cli.runtime import check_keys_at_start, run, settings_for_cli
from chainflow.core.errors import InvalidInput
from chainflow.core.logging import get_logger
from chainflow.core.settings import Settings
from chainflow.infra.datadir import hold_data_dir
from chainflow.infra.queue import RedisJobQueue
from chainflow.infra.queue.signals import RedisSignals
from chainflow.infra.signing.master_source import load_master_key
from chainflow.workers.context import open_engine
from chainflow.workers.main import run_engine

log = get_logger(__name__)


def parse_chain_ids(text: str | None) -> list[int] | None:
    """'1,137' → [1, 137]. Raises: InvalidInput."""
    if text is None:
        return None
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidInput(f"--chains must be comma-separated chain ids, got {text!r}") from None
    if not ids or any(i <= 0 for i in ids):
        raise InvalidInput(f"--chains must be comma-separated chain ids, got {text!r}")
    return ids


def worker(
    chains: Annotated[
        str | None, typer.Option(help="only these chain ids, comma-separated, e.g. 1,137")
    ] = None,
) -> None:
    """Drain lanes and track chains (distributed shape: run as many as you like)."""
    chain_ids = parse_chain_ids(chains)
    settings = settings_for_cli()
    with hold_data_dir(settings, exclusive=False):
        master = load_master_key(settings, allow_generate=settings.is_embedded)
        check_keys_at_start(settings, master)
        run(lambda: _work(settings, chain_ids))


async def _work(settings: Settings, chain_ids: list[int] | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    doorbells = RedisJobQueue(settings.redis_url) if settings.redis_url else None
    signals = None
    try:
        async with open_engine(settings, chain_ids=chain_ids) as engine:
            if settings.redis_url:
                signals = RedisSignals(settings.redis_url, sender=engine.owner)
            log.info("worker.started", chains=sorted(engine.rpc))
            await run_engine(
                engine,
                stop,
                poll_s=settings.worker_poll_s,
                queue=doorbells,
                signals=signals,
            )
    finally:
        if signals is not None:
            await signals.close()
        if doorbells is not None:
            await doorbells.close()
    log.info("worker.stopped")
