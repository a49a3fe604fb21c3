"""Read a secret from a file or stdin, never from a command-line argument."""

import getpass
import sys
from pathlib import Path

from chainflow.core.errors import InvalidInput


def read_secret(path: Path | None, *, what: str) -> str:
    """Read one secret line from `path`, or stdin (prompting without echo on a terminal)."""
    if path is not None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise InvalidInput(f"cannot read {what} from {path}: {exc.strerror}") from None
    elif sys.stdin.isatty():
        text = getpass.getpass(f"{what}: ")
    else:
        text = sys.stdin.read()
    text = text.strip()
    if not text:
        raise InvalidInput(f"no {what} given (pass --file PATH or pipe it on stdin)")
    return text
