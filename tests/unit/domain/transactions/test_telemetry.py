"""Each request is observed once in each stage histogram: one mined with no send recorded
counts from its signing (it was missing), and one mined again after a reorg is not counted in
queued_submitted and submitted_mined twice; a status change is counted once, on commit."""

import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY
from sqlalchemy.orm.attributes import set_committed_value

from chainflow.core.types import ChainId
from chainflow.domain.transactions.models import (
    AttemptKind,
    AttemptStatus,
    Transaction,
    TxAttempt,
)
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.transactions.telemetry import record_stages, record_transition
from chainflow.infra.db.commit_hooks import after_commit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STAGES = ("queued_submitted", "submitted_mined", "mined_confirmed", "request_final")
_CHAIN_IDS = itertools.count(910_001)  # a chain of its own per test: its own histograms


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_tx(*, signed_s: float, sent_s: float | None) -> Transaction:
    tx = Transaction(
        id=uuid.uuid4(),
        chain_id=ChainId(next(_CHAIN_IDS)),
        status=TxStatus.SIGNED,
        nonce=0,
        from_address="0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        created_at=T0,
    )
    attempt = TxAttempt(
        id=uuid.uuid4(),
        kind=AttemptKind.ORIGINAL,
        status=AttemptStatus.SIGNED,
        nonce=0,
        hash=f"0x{1:064x}",
        raw=b"",
        created_at=at(signed_s),
        first_sent_at=None if sent_s is None else at(sent_s),
    )
    set_committed_value(tx, "attempts", [attempt])
    return tx


def observed(chain_id: int) -> dict[str, tuple[float, float]]:
    """(count, sum of seconds) of each stage of `chain_id`."""
    found = {}
    for stage in STAGES:
        labels = {"chain_id": str(chain_id), "stage": stage}
        count = REGISTRY.get_sample_value("chainflow_tx_stage_seconds_count", labels) or 0.0
        total = REGISTRY.get_sample_value("chainflow_tx_stage_seconds_sum", labels) or 0.0
        found[stage] = (count, total)
    return found


def test_a_request_mined_with_no_send_recorded_counts_from_its_signing() -> None:
    tx = make_tx(signed_s=2, sent_s=None)
    record_stages(tx, (TxStatus.SIGNED, TxStatus.MINED), at=at(5))
    record_stages(tx, (TxStatus.MINED, TxStatus.CONFIRMED), at=at(6))
    assert observed(tx.chain_id) == {
        "queued_submitted": (1, 2.0),
        "submitted_mined": (1, 3.0),
        "mined_confirmed": (1, 1.0),
        "request_final": (1, 6.0),
    }


def test_a_recorded_send_is_its_send() -> None:
    tx = make_tx(signed_s=2, sent_s=3)
    record_stages(tx, (TxStatus.SUBMITTED, TxStatus.MINED), at=at(5))
    assert observed(tx.chain_id)["queued_submitted"] == (1, 3.0)
    assert observed(tx.chain_id)["submitted_mined"] == (1, 2.0)


def test_a_request_mined_again_after_a_reorg_is_in_each_stage_once() -> None:
    tx = make_tx(signed_s=1, sent_s=2)
    record_stages(tx, (TxStatus.SUBMITTED, TxStatus.MINED), at=at(5))
    record_stages(tx, (TxStatus.MINED, TxStatus.SUBMITTED), at=at(6))  # the reorg
    record_stages(tx, (TxStatus.SUBMITTED, TxStatus.MINED), at=at(8))
    record_stages(tx, (TxStatus.MINED, TxStatus.CONFIRMED), at=at(9))
    assert observed(tx.chain_id) == {
        "queued_submitted": (1, 2.0),
        "submitted_mined": (1, 3.0),  # its first mining, as before the reorg
        "mined_confirmed": (1, 1.0),  # from the mining that stayed
        "request_final": (1, 9.0),
    }


def transitions(chain_id: int) -> float:
    labels = {"chain_id": str(chain_id), "from": "queued", "to": "signed"}
    return REGISTRY.get_sample_value("chainflow_tx_transitions_total", labels) or 0.0


def test_a_status_change_is_counted_once_when_its_unit_of_work_commits() -> None:
    chain_id = next(_CHAIN_IDS)
    callbacks: list[Callable[[], None]] = []
    token = after_commit.set(callbacks)  # a unit of work open
    try:
        record_transition(chain_id, "queued", "signed")
        assert transitions(chain_id) == 0  # not committed yet
    finally:
        after_commit.reset(token)
    for callback in callbacks:  # the commit
        callback()
    assert transitions(chain_id) == 1
    assert transitions(chain_id) == 1  # scraped again: still once
    record_transition(chain_id, "queued", "signed")  # no unit of work open: counted at once
    assert transitions(chain_id) == 2
