"""Metrics of deliveries: counted once the unit of work that recorded them commits (a turn
whose record is rolled back is recorded again next turn, and must not count twice; issue 18)."""

from collections.abc import Sequence
from datetime import datetime
from functools import partial

from prometheus_client import Counter

from chainflow.infra import metrics
from chainflow.infra.db.commit_hooks import on_commit

DELIVERED, RETRY, GAVE_UP, DROPPED = "delivered", "retry", "gave_up", "dropped"


def record_attempts(attempts: Sequence[tuple[str, str | None, float, float | None]]) -> None:
    """Count attempts, each (outcome, error class, duration s, lag s from the event's change
    if it delivered), once the unit of work commits."""
    if metrics.SWITCH.on and attempts:
        on_commit(partial(_count_attempts, list(attempts)))


def record_dropped(count: int) -> None:
    """Count deliveries given up because their event was pruned first."""
    if metrics.SWITCH.on and count:
        on_commit(partial(_child(metrics.WEBHOOK_DELIVERIES, DROPPED).inc, count))


def record_disabled() -> None:
    if metrics.SWITCH.on:
        on_commit(metrics.WEBHOOK_ENDPOINTS_DISABLED.inc)


def lag_s(event_at: datetime, now: datetime) -> float:
    return max(0.0, (now - event_at).total_seconds())


def _count_attempts(attempts: list[tuple[str, str | None, float, float | None]]) -> None:
    for outcome, error, duration_s, lag in attempts:
        _child(metrics.WEBHOOK_DELIVERIES, outcome).inc()
        metrics.WEBHOOK_ATTEMPT_SECONDS.observe(duration_s)
        if error is not None:
            _child(metrics.WEBHOOK_ATTEMPT_ERRORS, error).inc()
        if lag is not None:
            metrics.WEBHOOK_DELIVERY_LAG_SECONDS.observe(lag)


# Labelled children, looked up once (`labels()` costs ~3 µs a call); the label values are the
# outcomes and error classes, a few each.
_children: dict[tuple[int, str], Counter] = {}


def _child(counter: Counter, label: str) -> Counter:
    key = (id(counter), label)
    child = _children.get(key)
    if child is None:
        child = _children[key] = counter.labels(label)
    return child
