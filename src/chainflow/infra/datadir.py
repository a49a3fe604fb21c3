"""The data folder: private permissions, durable file replacement, and the lock of its users.

The folder holds the embedded database and the master key file, so it is 0700 and every file
Chainflow keeps in it is 0600 (issue 14). Every process that uses it (api, worker, dev, the
wallet commands) holds a shared `flock` on `chainflow.lock` for its life; a master-key rotation
takes it exclusively, so it never runs beside a process that holds the old key in memory.
"""

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy.engine import make_url

from chainflow.core.errors import ConfigError
from chainflow.core.logging import get_logger
from chainflow.core.settings import Settings

LOCK_FILE = "chainflow.lock"
_DIR_MODE = 0o700
_FILE_MODE = 0o600
# SQLite gives its -wal/-shm/-journal files the database file's mode; older ones are fixed too.
_SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")
log = get_logger(__name__)


def secure_data_dir(settings: Settings) -> None:
    """Create the data folder 0700 (tightening a looser one, with a warning) and make the
    embedded database and key files in use 0600, creating the database file if missing.

    Raises:
        ConfigError: the folder or a file cannot be created or tightened.
    """
    if not settings.uses_data_dir:
        return
    try:
        _secure_dir(settings.data_dir)
        database = _sqlite_file(settings)
        if database is not None:
            database.parent.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            _create_private(database)  # an empty file is an empty SQLite database
        for path in _private_files(settings.data_dir, database):
            _tighten(path, _FILE_MODE)
    except OSError as exc:
        raise ConfigError(
            f"cannot make the data folder {settings.data_dir} private: {exc.strerror}"
        ) from None


def _secure_dir(path: Path) -> None:
    path.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    _tighten(path, _DIR_MODE)


def _sqlite_file(settings: Settings) -> Path | None:
    url = make_url(settings.resolved_database_url)
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return None if database.startswith("file:") else Path(database)


def _private_files(folder: Path, database: Path | None) -> list[Path]:
    files = [folder / LOCK_FILE, *folder.glob("master.key*")]
    if database is not None:
        files += [database.with_name(database.name + suffix) for suffix in _SQLITE_SUFFIXES]
    # Regular files only: a folder or FIFO under a key file's name is refused by the reader
    # (infra/files.py), and a folder made 0600 could no longer be entered.
    return [path for path in files if path.is_file()]


def _create_private(path: Path) -> None:
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE))


def _tighten(path: Path, mode: int) -> None:
    current = stat.S_IMODE(path.stat().st_mode)
    if current & ~mode:
        path.chmod(current & mode)
        log.warning(
            "data_dir.permissions_tightened",
            path=str(path),
            was=oct(current),
            now=oct(current & mode),
        )


def write_durably(
    path: Path, text: str, *, before_rename: Callable[[], None] | None = None
) -> None:
    """Replace `path` with `text` so that a crash at any instant leaves the old file or the
    new one, whole: a 0600 temporary file, fsynced, renamed over `path`, folder fsynced."""
    temporary = path.with_name(path.name + ".tmp")
    _write_synced(temporary, text, flags=os.O_TRUNC)
    if before_rename is not None:
        before_rename()
    os.replace(temporary, path)
    fsync_dir(path.parent)


def create_durably(path: Path, text: str) -> bool:
    """Create `path` holding `text` (fsynced) unless it exists; False if another process
    created it first. Readers never see it empty or half written (a hard link publishes it)."""
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(descriptor)
    temporary = Path(name)
    try:
        _write_synced(temporary, text, flags=os.O_TRUNC)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        fsync_dir(path.parent)
        return True
    finally:
        temporary.unlink(missing_ok=True)


def _write_synced(path: Path, text: str, *, flags: int) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | flags, _FILE_MODE)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    """Make a rename or a new name in `path` durable."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_file(path: Path) -> None:
    """Flush a file someone else wrote to disk (a new master key given to a rotation)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def hold_data_dir(settings: Settings, *, exclusive: bool) -> Iterator[None]:
    """Hold the data folder's lock: shared by the processes that use the keys, exclusive for a
    rotation. Never waits. A process that does not use the folder takes nothing.

    Raises:
        ConfigError: the other kind of holder is running.
    """
    if not settings.uses_data_dir:
        yield
        return
    secure_data_dir(settings)
    path = settings.data_dir / LOCK_FILE
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
    try:
        _lock(descriptor, settings.data_dir, exclusive=exclusive)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def _lock(descriptor: int, folder: Path, *, exclusive: bool) -> None:
    kind = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    try:
        fcntl.flock(descriptor, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        if exclusive:
            raise ConfigError(
                f"a Chainflow process (api, worker, dev or wallet) is using {folder}; "
                "stop it before rotating the master key"
            ) from None
        raise ConfigError(
            f"a master-key rotation is running on {folder}; start again when it has finished"
        ) from None
