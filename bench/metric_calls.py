"""What the metrics' hot paths cost one confirmed transaction, in-process (docs/performance.md
item 52): the calls the API and the workers make for one request sent once (the request's
count and latency, five status changes each counted on commit, the stage times, the signer's
time, five events' outbox lag), timed with metrics on and off in this process. A cluster's
CPU per transaction spreads by ±10 % between runs, far more than these few µs; this does not.
Left out: JSON-RPC requests (a batch counts once: under one per transaction) and scrapes.

Run: .venv/bin/python -m bench.metric_calls [--transactions 20000 --runs 7]
"""

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from chainflow.api.request_metrics import RequestMetrics
from chainflow.domain.events import sequencer
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.transactions.telemetry import record_stages, record_transition
from chainflow.infra import metrics
from chainflow.infra.db.commit_hooks import after_commit
from chainflow.infra.signing import local
from chainflow.infra.signing.local import LocalSigner, generate_private_key

_T0 = datetime(2026, 1, 1, tzinfo=UTC)
_CHAIN_ID = 31337
_SCOPE = {"route": SimpleNamespace(path="/v1/transactions"), "method": "POST"}


def _committed(*steps: Callable[[], object]) -> None:
    """Run `steps` in a unit of work's hook scope, then its after-commit callbacks."""
    callbacks: list[Callable[[], None]] = []
    token = after_commit.set(callbacks)
    try:
        for step in steps:
            step()
    finally:
        after_commit.reset(token)
    for callback in callbacks:
        callback()


async def _unsigned(_tx: Any, _sign: Any) -> Any:  # the signature itself is not the metrics'
    return None


async def _one(requests: RequestMetrics, signer: LocalSigner) -> None:
    tx: Any = SimpleNamespace(id=uuid.uuid4(), chain_id=_CHAIN_ID, created_at=_T0, attempts=[])
    if metrics.SWITCH.on:  # the edge has no RequestMetrics when off (api/edge.py)
        requests.record(_SCOPE, 202, 0.0012)
    _committed(lambda: record_transition(_CHAIN_ID, None, "queued"))
    _committed(lambda: record_transition(_CHAIN_ID, "queued", "signed"))
    await signer.sign_transaction({})
    _committed(lambda: record_transition(_CHAIN_ID, "signed", "submitted"))
    mined, sent = _T0 + timedelta(seconds=1), _T0 + timedelta(seconds=0.5)
    _committed(
        lambda: record_transition(_CHAIN_ID, "submitted", "mined"),
        lambda: record_stages(tx, (TxStatus.SUBMITTED, TxStatus.MINED), at=mined, sent=sent),
    )
    confirmed = _T0 + timedelta(seconds=2)
    _committed(
        lambda: record_transition(_CHAIN_ID, "mined", "confirmed"),
        lambda: record_stages(tx, (TxStatus.MINED, TxStatus.CONFIRMED), at=confirmed),
    )
    _committed(lambda: sequencer._record_lag([0.5] * 5))


async def per_tx_us(*, enabled: bool, transactions: int, runs: int) -> list[float]:
    """CPU µs per transaction of `_one`, each of `runs` runs (after a warm-up)."""
    metrics.configure(enabled=enabled)
    vars(local)["sign_transaction_with"] = _unsigned  # the signing stubbed out, its timing kept
    requests, signer = RequestMetrics(), LocalSigner(generate_private_key())
    for _ in range(transactions // 10):
        await _one(requests, signer)
    found = []
    for _ in range(runs):
        started = time.process_time()
        for _ in range(transactions):
            await _one(requests, signer)
        found.append((time.process_time() - started) / transactions * 1e6)
    return found


async def cost_us(*, transactions: int, runs: int) -> tuple[float, list[float], list[float]]:
    """(median on - median off, on runs, off runs) in µs per transaction."""
    on = await per_tx_us(enabled=True, transactions=transactions, runs=runs)
    off = await per_tx_us(enabled=False, transactions=transactions, runs=runs)
    metrics.configure(enabled=True)
    return statistics.median(on) - statistics.median(off), on, off


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transactions", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    cost, on, off = asyncio.run(cost_us(transactions=args.transactions, runs=args.runs))
    print(
        f"- the metric calls of one transaction, in-process: {cost:.1f} µs (on "
        f"{[round(v, 1) for v in on]}, off {[round(v, 1) for v in off]} µs per transaction)"
    )


if __name__ == "__main__":
    main()
