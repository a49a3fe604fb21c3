"""Where the master key comes from: the setting, or (embedded only) a generated file."""

import base64
import os
from pathlib import Path

from chainflow.core.errors import ConfigError
from chainflow.core.logging import get_logger
from chainflow.core.settings import Settings
from chainflow.infra.files import read_text_file
from chainflow.infra.signing.keystore import MasterKey

MASTER_KEY_FILE = "master.key"
MASTER_KEY_FILE_MAX_BYTES = 4096  # the key is 44 base64 characters
log = get_logger(__name__)


def load_master_key(settings: Settings, *, allow_generate: bool) -> MasterKey:
    """Return the configured master key; in embedded mode, read or create the data-dir file.

    Raises:
        ConfigError: distributed mode without CHAINFLOW_MASTER_KEY, or an invalid key.
    """
    if settings.master_key is not None:
        return MasterKey.from_b64(settings.master_key.get_secret_value())
    if not settings.is_embedded:
        raise ConfigError(
            "invalid setting CHAINFLOW_MASTER_KEY: required when CHAINFLOW_REDIS_URL is set "
            "(generate one with `chainflow keys generate-master`)"
        )
    path = settings.data_dir / MASTER_KEY_FILE
    if path.exists():
        text = read_text_file(path, what="master key", max_bytes=MASTER_KEY_FILE_MAX_BYTES)
        return MasterKey.from_b64(text.strip())
    if not allow_generate:
        raise ConfigError("invalid setting CHAINFLOW_MASTER_KEY: not set, and no key file exists")
    return _generate_into(path)


def _generate_into(path: Path) -> MasterKey:
    path.parent.mkdir(parents=True, exist_ok=True)
    key = MasterKey.generate()
    # O_EXCL: two processes starting at once must not both write a key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(key.secret.reveal()).decode() + "\n")
    log.warning(
        "master_key.generated",
        path=str(path),
        hint="embedded mode only; back this file up, or set CHAINFLOW_MASTER_KEY",
    )
    return key
