"""Every command runs under CPython's default recursion limit, not the 100,000 that py_ecc
sets when eth-account imports it (issue 14: C parsers overflowed the stack under it). No
command imports eth-account at start-up any more (infra/signing/transactions.py imports it
for a legacy signature); `run` still restores the limit, whatever a command imported."""

import subprocess
import sys

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
