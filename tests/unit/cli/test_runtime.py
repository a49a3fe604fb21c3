"""Every command runs under CPython's default recursion limit, not the 100,000 that py_ecc
sets when eth-account imports it (issue 14: C parsers overflowed the stack under it)."""

import subprocess
import sys

_PROBE = """
import asyncio, sys
import chainflow.cli.app  # every command's imports, py_ecc's among them
from chainflow.cli.runtime import run
print(run(lambda: asyncio.sleep(0, sys.getrecursionlimit())))
"""


def test_a_command_body_runs_under_the_default_recursion_limit() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    assert probe.stdout.strip() == "1000"
