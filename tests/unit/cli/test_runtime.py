"""Every command runs under CPython's default recursion limit, not the 100,000 that py_ecc
sets when eth-account imports it (issue 14: C parsers overflowed the stack under it). No
command imports eth-account at start-up any more (infra/signing/transactions.py imports it
for a legacy signature); `run` still restores the limit, whatever a command imported."""

import asyncio
import signal
import subprocess
import sys
from types import FrameType
from typing import Any, cast

import pytest

from chainflow.cli import runtime

_PROBE = """
import asyncio, sys
import chainflow.cli.embedded  # what the largest command (`chainflow dev`) imports
import eth_account  # py_ecc with it
from chainflow.cli.runtime import run
print(run(lambda: asyncio.sleep(0, sys.getrecursionlimit())))
"""


def test_a_command_body_runs_under_the_default_recursion_limit() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    assert probe.stdout.strip() == "1000"


_GC_PROBE = """
import asyncio, gc
from chainflow.cli.runtime import run
print(run(lambda: asyncio.sleep(0, (gc.get_threshold(), gc.get_freeze_count() > 0))))
"""


def test_a_command_body_runs_with_the_collector_tuned_and_start_up_frozen() -> None:
    """docs/performance.md item 46: a round's objects no longer reach the old generations."""
    probe = subprocess.run(
        [sys.executable, "-c", _GC_PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    assert probe.stdout.strip() == f"({runtime.GC_THRESHOLDS}, True)"


def test_the_wait_for_the_database_puts_back_the_signal_handlers_from_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`chainflow.cli.main` makes a SIGTERM during start-up exit 0; the wait for the database
    adds the loop's handlers, and their removal left SIGTERM's default: a worker stopped
    between that wait and its engine's own handler died of the signal (exit -15)."""

    async def answers(_settings: Any, _stop: asyncio.Event) -> bool:
        return True

    def starting(_signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    monkeypatch.setattr(runtime, "wait_for_database", answers)
    before = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, starting)
    try:
        assert runtime.database_answers(cast(Any, None))
        assert signal.getsignal(signal.SIGTERM) is starting
    finally:
        signal.signal(signal.SIGTERM, before)
