"""The `chainflow` command line: api, dev, db, apikey, wallet, keys."""

from chainflow.cli.app import main

__all__ = ["main"]
