"""All SQL of transactions, attempts and events.

    queries.py  reads (no locks): a request, a page, lanes with work
    in_flight.py  reads (no locks): what a chain has in flight, the tracker's page
    locks.py    every row lock on requests, through one helper and in one order (by id)
    bulk.py     the Core writes of the hot paths: a signing round, send answers, receipts
    intake.py   a submission's read and inserts (the API's hot path, no ORM unit of work)

The package re-exports the reads and the locks: `repository.tracked(...)`.
"""

from chainflow.domain.transactions.repository.in_flight import (
    TRACKED,
    count_in_flight,
    lanes_in_flight,
    tracked,
)
from chainflow.domain.transactions.repository.locks import (
    LockedState,
    lock_expired_below,
    lock_queued,
    lock_queued_ids,
    lock_states,
    lock_tracked,
    lock_with_attempts,
)
from chainflow.domain.transactions.repository.queries import (
    LaneHolders,
    TxFilters,
    get,
    get_by_idempotency_keys,
    lanes_with_queued,
    list_page,
    queued_for_lane,
    queued_for_lanes,
    waiting_for_funds,
)

__all__ = [
    "TRACKED",
    "LaneHolders",
    "LockedState",
    "TxFilters",
    "count_in_flight",
    "get",
    "get_by_idempotency_keys",
    "lanes_in_flight",
    "lanes_with_queued",
    "list_page",
    "lock_expired_below",
    "lock_queued",
    "lock_queued_ids",
    "lock_states",
    "lock_tracked",
    "lock_with_attempts",
    "queued_for_lane",
    "queued_for_lanes",
    "tracked",
    "waiting_for_funds",
]
