"""Metrics of status changes: counted, and stage times observed, once their unit of work commits.

Called from the writers of status changes only (lifecycle.py, confirming.py), so that every
committed change is counted exactly once, by the process that committed it (issue 18).
"""

import uuid
from datetime import datetime, timedelta
from functools import partial
from typing import TypeVar

from chainflow.domain.transactions.models import Transaction
from chainflow.domain.transactions.rows import InFlight
from chainflow.domain.transactions.state import TxStatus, is_terminal
from chainflow.infra import metrics
from chainflow.infra.db.commit_hooks import on_commit

# When this process saw each request mined (the tracker's lease keeps a chain on one process,
# so the same process usually sees it confirmed). Bounded: a request whose confirmation another
# process records after a lease handover is dropped here, unobserved, with the oldest entries.
_MINED_AT: dict[uuid.UUID, datetime] = {}
_MINED_AT_MAX = 100_000
# Requests this process saw go from mined back to submitted (a reorg): their queued_submitted
# and submitted_mined were observed when they were first mined, and are not again when they
# are mined anew (each request is in each stage once). Bounded like _MINED_AT (a dict as an
# ordered set).
_REORGED: dict[uuid.UUID, None] = {}
_counters: dict[tuple[int, str, str], metrics.CountCell] = {}
_stages: dict[tuple[int, str], metrics.BinCell] = {}


def record_transition(chain_id: int, from_status: str | None, to_status: str) -> None:
    """Count one status change of a request of `chain_id` once it commits."""
    if not metrics.SWITCH.on:
        return
    on_commit(partial(_count, chain_id, from_status or "none", to_status))


def record_stages(
    tx: Transaction | InFlight,
    moved: tuple[TxStatus, TxStatus],
    *,
    at: datetime,
    sent: datetime | None = None,
) -> None:
    """Observe the stage times that end as `tx` moves (from, to) at `at`, once it commits.
    When it moves to mined, its first send is `sent` if given, else read from its attempts
    (then loaded, and current: a snapshot read before its send was recorded has none)."""
    if not metrics.SWITCH.on:
        return
    from_status, to_status = moved
    if to_status is TxStatus.MINED and from_status is not TxStatus.MINED:
        first_sent = sent or _first_sent(tx)
        on_commit(partial(_mined, tx.chain_id, tx.id, tx.created_at, first_sent, at))
    elif from_status is TxStatus.MINED and to_status is not TxStatus.MINED:
        on_commit(partial(_left_mined, tx.chain_id, tx.id, to_status, at))
    if is_terminal(to_status):
        on_commit(partial(_observe, tx.chain_id, "request_final", at - tx.created_at))


def _first_sent(tx: Transaction | InFlight) -> datetime | None:
    """Its first send as recorded; for one mined with no send recorded (the node's answer was
    lost, or the process stopped between the send and its record) its signing, which the send
    followed: before, such a request was missing from queued_submitted and submitted_mined."""
    sends = [a.first_sent_at for a in tx.attempts if a.first_sent_at is not None]
    signings = [a.created_at for a in tx.attempts]
    return min(sends or signings, default=None)


def _count(chain_id: int, from_status: str, to_status: str) -> None:
    key = (chain_id, from_status, to_status)
    counter = _counters.get(key)
    if counter is None:
        counter = _counters[key] = metrics.TX_TRANSITIONS.cell(str(chain_id), *key[1:])
    counter.count += 1
    if from_status == TxStatus.MINED and to_status == TxStatus.SUBMITTED:
        metrics.TX_REORGS.labels(str(chain_id)).inc()


def _observe(chain_id: int, stage: str, took: timedelta) -> None:
    seconds = took.total_seconds()
    key = (chain_id, stage)
    histogram = _stages.get(key)
    if histogram is None:
        histogram = _stages[key] = metrics.TX_STAGE_SECONDS.cell(str(chain_id), stage)
    histogram.observe(max(seconds, 0.0))


def _mined(
    chain_id: int,
    tx_id: uuid.UUID,
    created_at: datetime,
    first_sent: datetime | None,
    at: datetime,
) -> None:
    reorged = tx_id in _REORGED
    _REORGED.pop(tx_id, None)
    if first_sent is not None and not reorged:
        _observe(chain_id, "queued_submitted", first_sent - created_at)
        _observe(chain_id, "submitted_mined", at - first_sent)
    _remember(_MINED_AT, tx_id, at)


def _left_mined(chain_id: int, tx_id: uuid.UUID, to_status: TxStatus, at: datetime) -> None:
    mined_at = _MINED_AT.pop(tx_id, None)
    if mined_at is not None and to_status in (TxStatus.CONFIRMED, TxStatus.REVERTED):
        _observe(chain_id, "mined_confirmed", at - mined_at)
    if to_status is TxStatus.SUBMITTED:
        _remember(_REORGED, tx_id, None)


_V = TypeVar("_V")


def _remember(memory: dict[uuid.UUID, _V], tx_id: uuid.UUID, value: _V) -> None:
    """Keep `value` for `tx_id`, the oldest entry dropped once `_MINED_AT_MAX` are kept."""
    if tx_id not in memory and len(memory) >= _MINED_AT_MAX:
        del memory[next(iter(memory))]
    memory[tx_id] = value


def count_error(chain_id: int, kind: str) -> None:
    """Count a node's error answer to a send, by its class."""
    if not metrics.SWITCH.on:
        return
    metrics.TX_ERRORS.labels(str(chain_id), kind).inc()


def count_replacement(chain_id: int, outcome: str) -> None:
    """Count a fee bump or cancel signed (`bump`, `cancel`), or none fitting (`capped`)."""
    if not metrics.SWITCH.on:
        return
    on_commit(partial(metrics.TX_FEE_BUMPS.labels(str(chain_id), outcome).inc))


def tx_context(tx: Transaction | InFlight) -> dict[str, object]:
    """The fields every engine log line about a request carries, so that `grep tx_id=…`
    finds them all and each names its lane (issue 18)."""
    return {"tx_id": str(tx.id), "chain_id": tx.chain_id, "wallet": tx.from_address}
