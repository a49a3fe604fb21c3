"""Read a secret from a file or stdin, never from a command-line argument."""

import getpass
import sys
from pathlib import Path

from chainflow.core.errors import InvalidInput
from chainflow.infra.files import decode_text, read_text_file

# A private key is 66 characters and a master key 44: room for whitespace and a BOM, and a
# bound on what a wrong file (a disk image, /dev/urandom on stdin) can make us read.
SECRET_MAX_BYTES = 4096


def read_secret(path: Path | None, *, what: str, option: str = "--file") -> str:
    """Read one secret line from `path`, or stdin (prompting without echo on a terminal);
    `option` is the command's option that gives `path` (named when nothing was given)."""
    if path is not None:
        text = read_text_file(path, what=what, max_bytes=SECRET_MAX_BYTES)
    elif sys.stdin.isatty():
        text = getpass.getpass(f"{what}: ")
    else:
        data = sys.stdin.buffer.read(SECRET_MAX_BYTES + 1)
        text = decode_text(data, source=f"{what} on stdin", max_bytes=SECRET_MAX_BYTES)
    text = text.strip()
    if not text and path is not None:
        raise InvalidInput(f"{what} file {path} is empty")
    if not text:
        raise InvalidInput(f"no {what} given (pass {option} PATH or pipe it on stdin)")
    return text
