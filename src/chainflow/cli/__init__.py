"""The `chainflow` command line: api, dev, db, apikey, wallet, keys.

A command module imports at its top only what its options need (typer, `cli/options.py`,
`cli/runtime.py`); each command imports the rest in its body when it runs, so `chainflow
--help` loads no database, server or signing code and `chainflow apikey list` no API, worker
or eth-account (tests/unit/cli/test_imports.py). Every process paid ~1.2 s of CPU for all of
them before.
"""

import os
import signal
import sys
from types import FrameType

_SERVICES = ("api", "worker")


def main() -> None:
    """Entry point. A service told to stop while it is still starting (its imports and checks
    take most of a second) exits 0 at once: it has begun no work. Once running, it installs its
    own handler, which drains what is in flight first."""
    # Whatever a command creates (data folder, database, key files, anvil state) is private to
    # its user (issue 14: the data folder was 0755 and the database 0644).
    os.umask(0o077)
    if len(sys.argv) > 1 and sys.argv[1] in _SERVICES:
        signal.signal(signal.SIGTERM, _stopped_while_starting)
    # Imported only now, with the handler in place: importing is most of the start-up.
    from chainflow.cli.app import main as run_app
    from chainflow.cli.runtime import restore_recursion_limit

    restore_recursion_limit()
    run_app()


def _stopped_while_starting(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


__all__ = ["main"]
