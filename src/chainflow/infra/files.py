"""Small text files an operator points Chainflow at (keys, the chain seed): read bounded and
decoded strictly, so no file, however big, binary or endless, can crash or hang a command.

Only regular files are read: a device (`/dev/zero`, `/dev/urandom`), a FIFO or a socket is
refused before any byte is read (opened non-blocking, so a FIFO without a writer does not hang
the open either). At most `max_bytes + 1` bytes are ever read. Errors name the file, never its
content, which may be a secret."""

import os
import stat
from pathlib import Path

from chainflow.core.errors import InvalidInput

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class UnreadableFile(InvalidInput):
    code = "unreadable_file"


def read_text_file(path: Path, *, what: str, max_bytes: int) -> str:
    """The UTF-8 text of the regular file at `path`. Raises: UnreadableFile."""
    source = f"{what} file {path}"
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise UnreadableFile(f"cannot read {source}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnreadableFile(f"cannot read {source}: not a regular file")
        data = _read_at_most(fd, max_bytes + 1)
    except OSError as exc:
        raise UnreadableFile(f"cannot read {source}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return decode_text(data, source=source, max_bytes=max_bytes)


def decode_text(data: bytes, *, source: str, max_bytes: int) -> str:
    """`data` as UTF-8 text (a leading BOM dropped). Raises: UnreadableFile, if it is longer
    than `max_bytes` or not UTF-8."""
    if len(data) > max_bytes:
        raise UnreadableFile(f"{source} is larger than {max_bytes} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnreadableFile(f"{source} is not UTF-8 text") from None


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, min(remaining, 65_536))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
