"""Crash points: a process kills itself at a named step of the transaction pipeline or of a
master-key rotation.

For chaos tests only. Off unless the setting CHAINFLOW_TEST_CRASH_AT names a point, as
`attempt_stored` (the first time it is reached) or `attempt_stored:3` (the third time). The
process then sends itself SIGKILL: no `finally`, no commit, no graceful shutdown, exactly what an
OOM kill or a lost host does, so each step's recovery can be tested deterministically.
"""

import os
import signal
import sys
from dataclasses import dataclass, field

from chainflow.core.numerals import ascii_int


class CrashPoint:
    """The names of the steps a test can crash at, in pipeline order."""

    NONCE_TAKEN = "nonce_taken"  # nonces assigned and attempts signed, nothing committed
    ATTEMPT_STORED = "attempt_stored"  # attempts committed, nothing broadcast
    NODE_ACCEPTED = "node_accepted"  # the node answered the broadcast, nothing recorded
    BUMP_STORED = "bump_stored"  # a fee-bump attempt committed, not yet broadcast
    REORG_RECORDING = "reorg_recording"  # a vanished receipt applied, not yet committed
    # `chainflow keys rotate-master`, in its order (docs: README "Wallets and key custody").
    ROTATION_LOCKED = "rotation_locked"  # every other user of the keys shut out, nothing changed
    KEY_FILE_WRITTEN = "key_file_written"  # a key file's temporary copy fsynced, not renamed
    KEY_FILE_INSTALLED = "key_file_installed"  # a key file renamed into place, folder fsynced
    ROTATION_BATCH_REWRAPPED = "rotation_batch_rewrapped"  # a batch re-wrapped, not committed
    ROTATION_BATCH_COMMITTED = "rotation_batch_committed"  # a batch of re-wrapped rows committed
    # Schedules (issue 19): runs and their transactions inserted, nothing committed.
    SCHEDULE_RUNS_STORED = "schedule_runs_stored"


POINTS = frozenset(
    value for name, value in vars(CrashPoint).items() if name.isupper() and isinstance(value, str)
)


def parse_crash_at(spec: str) -> tuple[str, int]:
    """`name` or `name:n` → (name, n).

    Raises:
        ValueError: an unknown point or a count below 1.
    """
    name, _, count = spec.partition(":")
    if name not in POINTS:
        raise ValueError(f"unknown crash point {name!r}; one of {', '.join(sorted(POINTS))}")
    hits = (ascii_int(count, max_digits=9) or -1) if count else 1
    if hits < 1:
        raise ValueError("the count after ':' must be a whole number of at least 1")
    return name, hits


@dataclass
class Crasher:
    """Counts arrivals at the armed point and kills the process at the chosen one."""

    point: str | None = None
    at_hit: int = 1
    _hits: int = field(default=0, init=False)

    @classmethod
    def from_spec(cls, spec: str | None) -> "Crasher":
        if not spec:
            return cls()
        name, hits = parse_crash_at(spec)
        return cls(name, hits)

    def reached(self, point: str) -> None:
        if point != self.point:
            return
        self._hits += 1
        if self._hits >= self.at_hit:
            sys.stderr.write(f"chainflow: crash point {point} reached, killing this process\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)
