"""Where the master key comes from: the setting, or (embedded only) a generated file.

Key files in the data folder (0600): `master.key` holds the current key and
`master.key.previous` the key a rotation replaced. A process can unseal rows wrapped by either,
so a rotation killed after installing the new key, but before re-wrapping every row, loses
nothing. With CHAINFLOW_MASTER_KEY, CHAINFLOW_MASTER_KEY_PREVIOUS plays the second role.
"""

import base64
from pathlib import Path

from chainflow.core.crashpoints import Crasher, CrashPoint
from chainflow.core.errors import ConfigError
from chainflow.core.logging import get_logger
from chainflow.core.settings import Settings
from chainflow.infra.datadir import create_durably, secure_data_dir, write_durably
from chainflow.infra.files import read_text_file
from chainflow.infra.signing.keystore import MasterKey

MASTER_KEY_FILE = "master.key"
PREVIOUS_KEY_FILE = "master.key.previous"
MASTER_KEY_FILE_MAX_BYTES = 4096  # the key is 44 base64 characters
log = get_logger(__name__)


def load_master_key(settings: Settings, *, allow_generate: bool) -> MasterKey:
    """Return the configured master key, carrying the previous one when there is one; in
    embedded mode, read or create the data-dir file.

    Raises:
        ConfigError: distributed mode without CHAINFLOW_MASTER_KEY, or an invalid key.
    """
    if settings.master_key is not None:
        current = MasterKey.from_b64(settings.master_key.get_secret_value())
        if settings.master_key_previous is None:
            return current
        source = "setting CHAINFLOW_MASTER_KEY_PREVIOUS"
        previous = MasterKey.from_b64(
            settings.master_key_previous.get_secret_value(), source=source
        )
        return current.with_previous(previous)
    if not settings.is_embedded:
        raise ConfigError(
            "invalid setting CHAINFLOW_MASTER_KEY: required when CHAINFLOW_REDIS_URL is set "
            "(generate one with `chainflow keys generate-master`)"
        )
    return _load_files(settings, allow_generate=allow_generate)


def uses_key_file(settings: Settings) -> bool:
    """True when the master key lives in the data folder (no CHAINFLOW_MASTER_KEY)."""
    return settings.master_key is None


def _load_files(settings: Settings, *, allow_generate: bool) -> MasterKey:
    secure_data_dir(settings)
    path = settings.data_dir / MASTER_KEY_FILE
    if path.exists():
        current = _read(path)
    elif allow_generate:
        current = _generate_into(path)
    else:
        raise ConfigError("invalid setting CHAINFLOW_MASTER_KEY: not set, and no key file exists")
    previous = settings.data_dir / PREVIOUS_KEY_FILE
    return current.with_previous(_read(previous)) if previous.exists() else current


def _read(path: Path) -> MasterKey:
    text = read_text_file(path, what="master key", max_bytes=MASTER_KEY_FILE_MAX_BYTES)
    return MasterKey.from_b64(text, source=f"master key file {path}")


def _text_of(key: MasterKey) -> str:
    return base64.b64encode(key.secret.reveal()).decode() + "\n"


def _generate_into(path: Path) -> MasterKey:
    key = MasterKey.generate()
    # Two processes starting at once must not both install a key: the first link wins.
    try:
        created = create_durably(path, _text_of(key))
    except OSError as exc:
        raise ConfigError(f"cannot create the master key file {path}: {exc.strerror}") from None
    if not created:
        return _read(path)
    log.warning(
        "master_key.generated",
        path=str(path),
        hint="embedded mode only; back this file up, or set CHAINFLOW_MASTER_KEY",
    )
    return key


def install_master_key(
    data_dir: Path, *, current: MasterKey, new: MasterKey, crasher: Crasher
) -> None:
    """Keep `current` as the previous key, then make `new` the current one, each file durable
    before the next step. The caller has re-wrapped every row under `current` first, so the
    key `master.key.previous` held before wraps nothing."""

    def written() -> None:
        crasher.reached(CrashPoint.KEY_FILE_WRITTEN)

    for path, key in ((data_dir / PREVIOUS_KEY_FILE, current), (data_dir / MASTER_KEY_FILE, new)):
        try:
            write_durably(path, _text_of(key), before_rename=written)
        except OSError as exc:
            raise ConfigError(
                f"cannot write the master key file {path}: {exc.strerror}; no wallet was "
                "re-wrapped under the new key"
            ) from None
        crasher.reached(CrashPoint.KEY_FILE_INSTALLED)
