"""Targets of submissions remembered per (chain, wallet reference), for the group commit's path.

A submission is checked against its chain, wallet and lane (intake.find_target, one SELECT per
request: 15% of the API's CPU per transaction, docs/performance.md). On the group commit's path
that read is remembered here, and the group's statement checks again, against the rows it
sees when it runs, that the remembered target still admits the request (chain enabled,
wallet active at the same address without a spending policy, lane enabled, fees within the
chain's caps: intake._still_admissible); a request it refuses is checked again on its own
against a fresh read, and refused exactly as without this cache. So no remembered target is
ever trusted to accept: a wallet paused, a lane or chain disabled, a cap lowered, a policy
set in any API process takes effect for the next statement, as without it.

Only targets that admitted a request are remembered (refusals are read afresh each time).
"""

from chainflow.domain.transactions.repository.intake import Target

# Entries are small (~1 KB with their keys); a process serving more (chain, wallet) pairs than
# this drops them all and reads them again.
MAX_TARGETS = 10_000


class TargetCache:
    """(chain id, wallet id or address as given) → the target a request was admitted by."""

    def __init__(self, max_entries: int = MAX_TARGETS) -> None:
        self._max = max_entries
        self._targets: dict[tuple[int, str], Target] = {}

    def get(self, chain_id: int, wallet_ref: str) -> Target | None:
        return self._targets.get((chain_id, wallet_ref))

    def put(self, chain_id: int, wallet_ref: str, target: Target) -> None:
        if len(self._targets) >= self._max:
            self._targets.clear()
        self._targets[(chain_id, wallet_ref)] = target

    def forget(self, chain_id: int, wallet_ref: str) -> None:
        self._targets.pop((chain_id, wallet_ref), None)
